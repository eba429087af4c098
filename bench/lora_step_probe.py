"""Where does a LoRA step on a 7B Qwen2 spend its time, outside ms-swift?

`bench/train.py` measured `--recipe fast` at ~5.5k tokens/s (MFU ~16% by 4N) on an H100. This probe
times the bare model step (transformers + peft, no trainer, no data loader) on the same shapes, so
the gap can be split into "the model step itself" and "everything around it":

- packed: one row of 8 dialogues (~2,800 tokens) with per-dialogue position_ids (padding-free, sdpa)
- padded: 8 rows padded to the longest, no packing
- packed, LoRA dropout 0 / no LoRA at all (frozen base, input grads only)

It prints tokens/s and MFU by 4N per variant, and the top CUDA kernels of the packed step.
What it leaves out: optimizer step (LoRA params are tiny), liger's fused loss (loss here is the
plain CE over 152k logits, like `fast` without liger).

    python bench/lora_step_probe.py --out bench/results/lora_step_probe.json     # GPU
    python bench/lora_step_probe.py --tiny                                        # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import time

import torch

SHAPE_7B = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                intermediate_size=18944, vocab_size=152064)
SHAPE_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=1000)


def build(shape, dropout, lora=True, adapter_bf16=False):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    cfg._attn_implementation = "sdpa"
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with torch.device(dev):
        model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.requires_grad_(False)
    if lora:
        # peft keeps adapter weights in fp32 by default (autocast_adapter_dtype=True): fp32 GEMMs + casts.
        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=32, lora_dropout=dropout, target_modules="all-linear"),
                               autocast_adapter_dtype=not adapter_bf16)
    else:
        model.get_input_embeddings().weight.requires_grad_(True)  # something must need grads
    model.train()
    return model, dev


def batches(lengths, vocab, dev, packed):
    g = torch.Generator().manual_seed(0)
    if packed:
        ids = torch.randint(0, vocab, (1, sum(lengths)), generator=g)
        pos = torch.cat([torch.arange(n) for n in lengths])[None]
        return dict(input_ids=ids.to(dev), position_ids=pos.to(dev), labels=ids.to(dev))
    longest = max(lengths)
    ids = torch.randint(0, vocab, (len(lengths), longest), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return dict(input_ids=ids.to(dev), attention_mask=mask.to(dev), labels=labels.to(dev))


AUTOCAST = False


def step(model, batch):
    # The HF Trainer with bf16=True runs the forward under autocast; the bare probe can do both.
    with torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16, enabled=AUTOCAST):
        out = model(**batch)
    out.loss.backward()


def timeit(model, batch, steps, dev):
    for _ in range(2):
        step(model, batch)
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step(model, batch)
    if dev == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="")
    ap.add_argument("--only", default="", help="variant names separated by ';'")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of the packed LoRA step")
    args = ap.parse_args()
    shape = SHAPE_TINY if args.tiny else SHAPE_7B
    g = torch.Generator().manual_seed(1)
    lengths = [int(x) for x in torch.normal(349.0, 77.0, (8,), generator=g).clamp(150, 700)]
    tokens = sum(lengths)
    n_params = None
    rows = []
    global AUTOCAST
    variants = [("packed, lora", 0.05, True, True, False, False), ("padded, lora", 0.05, True, False, False, False),
                ("packed, lora dropout 0", 0.0, True, True, False, False), ("packed, no lora", 0.0, False, True, False, False),
                ("packed, lora, autocast", 0.05, True, True, False, True),
                ("packed, lora bf16", 0.05, True, True, True, False),
                ("packed, lora bf16 dropout 0", 0.0, True, True, True, False)]
    only = [v for v in variants if not args.only or any(v[0] == o for o in args.only.split(";"))]
    for name, dropout, lora, packed, adapter_bf16, autocast in only:
        AUTOCAST = autocast
        model, dev = build(shape, dropout, lora, adapter_bf16)
        if n_params is None:
            n_params = sum(p.numel() for n, p in model.named_parameters() if "lora" not in n and "embed" not in n)
        batch = batches(lengths, shape["vocab_size"], dev, packed)
        sec = timeit(model, batch, args.steps, dev)
        peak = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else 0.0
        tps = tokens / sec
        rows.append({"variant": name, "tokens": tokens, "step_s": round(sec, 4), "tokens_per_s": round(tps),
                     "mfu_4n": round(tps * 4 * n_params / 989e12, 4), "peak_gib": round(peak, 1)})
        print(rows[-1], flush=True)
        if name == "packed, lora" and dev == "cuda" and args.profile:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step(model, batch)
                torch.cuda.synchronize()
            table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15)
            print(table, flush=True)
            rows[-1]["profile_top"] = table
        del model, batch
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{card}, N = {n_params / 1e9:.2f} B matmul params, {tokens} tokens per step")
    print(f"{'variant':26} {'step s':>8} {'tokens/s':>10} {'MFU 4N':>8} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['variant']:26} {r['step_s']:>8} {r['tokens_per_s']:>10} {r['mfu_4n']:>8.1%} {r['peak_gib']:>9}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"card": card, "n_params": n_params, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
