"""Where does a LoRA step on a 7B Qwen2 spend its time, outside ms-swift?

`bench/train.py` measured `--recipe fast` at ~5.5k tokens/s (MFU ~16% by 4N) on an H100. This probe
times the bare model step (transformers + peft, no trainer, no data loader) on the same shapes, so
the gap can be split into "the model step itself" and "everything around it":

- packed: one row of 8 dialogues (~2,800 tokens) with per-dialogue position_ids (padding-free, sdpa)
- padded: 8 rows padded to the longest, no packing
- packed, LoRA dropout 0 / no LoRA at all (frozen base, input grads only)
- "new lengths" variants: a new row length every step, as real padding-free training sees it
  (cuDNN's sdpa builds a plan per new length), with sdpa or gwq's varlen attention
  (gwq_align/attention.py), with gwq's bf16-LoRA-inputs patch and its one-GEMM adapter output
  (gwq_align/swift_entry.py)

It prints tokens/s, MFU by 4N and peak allocated/reserved memory per variant (--profile: the top
CUDA kernels of the last variant's step).
What it leaves out: optimizer step (LoRA params are tiny), liger's fused loss (loss here is the
plain CE over 152k logits, like `fast` without liger).

    python bench/lora_step_probe.py --out bench/results/lora_step_probe.json     # GPU
    python bench/lora_step_probe.py --tiny                                        # CPU smoke run
    python bench/lora_step_probe.py --only "autocast, sdpa, new lengths;autocast, varlen, new lengths"
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from gwq_align.runrecord import versions  # noqa: E402

SHAPE_7B = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                intermediate_size=18944, vocab_size=152064)
SHAPE_TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  intermediate_size=128, vocab_size=1000)


def build(shape, dropout, lora=True, adapter_bf16=False, attn="sdpa"):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    cfg._attn_implementation = attn
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


def batches(lengths, vocab, dev, packed, seed=0):
    g = torch.Generator().manual_seed(seed)
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


def step(model, batch, autocast):
    # The HF Trainer with bf16=True runs the forward under autocast; the bare probe can do both.
    with torch.autocast(batch["input_ids"].device.type, dtype=torch.bfloat16, enabled=autocast):
        out = model(**batch)
    out.loss.backward()


def timeit(model, make_batch, steps, dev, autocast):
    """make_batch(i) -> batch; a new i each step means new shapes (what a real padding-free run sees)."""
    for i in range(2):
        step(model, make_batch(i), autocast)
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(steps):
        step(model, make_batch(2 + i), autocast)
    if dev == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


# name: dropout, lora, packed, adapter_bf16, autocast, attention, new lengths each step, gwq's peft patches
# (0: none, 1: bf16 LoRA inputs, 2: and the adapter output added in one addmm)
VARIANTS = {
    "packed, lora": (0.05, True, True, False, False, "sdpa", False, 0),
    "padded, lora": (0.05, True, False, False, False, "sdpa", False, 0),
    "packed, lora dropout 0": (0.0, True, True, False, False, "sdpa", False, 0),
    "packed, no lora": (0.0, False, True, False, False, "sdpa", False, 0),
    "packed, lora, autocast": (0.05, True, True, False, True, "sdpa", False, 0),
    "packed, lora bf16": (0.05, True, True, True, False, "sdpa", False, 0),
    "packed, lora bf16 dropout 0": (0.0, True, True, True, False, "sdpa", False, 0),
    # What a real run sees: a new row length every step.
    "autocast, sdpa, new lengths": (0.05, True, True, False, True, "sdpa", True, 0),
    "autocast, varlen, new lengths": (0.05, True, True, False, True, "gwq_varlen", True, 0),
    "autocast, varlen, new lengths, bf16 inputs": (0.05, True, True, False, True, "gwq_varlen", True, 1),
    "autocast, varlen, new lengths, bf16 inputs, addmm": (0.05, True, True, False, True, "gwq_varlen", True, 2),
    "lora bf16, varlen, new lengths": (0.05, True, True, True, False, "gwq_varlen", True, 0),
    "no lora, varlen, new lengths": (0.0, False, True, False, True, "gwq_varlen", True, 0),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="")
    ap.add_argument("--only", default="", help="variant names separated by ';'")
    ap.add_argument("--profile", action="store_true", help="print the top CUDA kernels of the last variant's step")
    args = ap.parse_args()
    shape = SHAPE_TINY if args.tiny else SHAPE_7B
    def lengths_for(i):
        g = torch.Generator().manual_seed(1 + i)
        return [int(x) for x in torch.normal(349.0, 77.0, (8,), generator=g).clamp(150, 700)]

    from gwq_align import attention, swift_entry
    from peft.tuners.lora.layer import Linear
    from peft.tuners.tuners_utils import BaseTunerLayer

    attention.register()
    plain_cast, plain_forward = BaseTunerLayer._cast_input_dtype, Linear.forward
    n_params = None
    rows = []
    only = [v for v in VARIANTS if not args.only or v in args.only.split(";")]
    for name in only:
        dropout, lora, packed, adapter_bf16, autocast, attn, vary, patches = VARIANTS[name]
        BaseTunerLayer._cast_input_dtype, Linear.forward = plain_cast, plain_forward
        if patches >= 1:
            swift_entry.keep_lora_inputs_in_autocast_dtype()
        if patches >= 2:
            swift_entry.add_lora_output_in_one_gemm()
        model, dev = build(shape, dropout, lora, adapter_bf16, attn)
        if n_params is None:
            n_params = sum(p.numel() for n, p in model.named_parameters() if "lora" not in n and "embed" not in n)
        made = {}

        def make_batch(i):
            key = i if vary else 0
            if key not in made:
                made.clear()
                made[key] = batches(lengths_for(key), shape["vocab_size"], dev, packed, seed=key)
            return made[key]

        sec = timeit(model, make_batch, args.steps, dev, autocast)
        tokens = sum(sum(lengths_for(2 + i if vary else 0)) for i in range(args.steps)) / args.steps
        alloc = torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else 0.0
        reserved = torch.cuda.max_memory_reserved() / 2**30 if dev == "cuda" else 0.0
        tps = tokens / sec
        rows.append({"variant": name, "tokens": round(tokens), "step_s": round(sec, 4), "tokens_per_s": round(tps),
                     "mfu_4n": round(tps * 4 * n_params / 989e12, 4), "peak_gib": round(alloc, 1),
                     "reserved_gib": round(reserved, 1)})
        print(rows[-1], flush=True)
        if dev == "cuda" and args.profile and name == only[-1]:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                step(model, make_batch(99), autocast)
                torch.cuda.synchronize()
            table = prof.key_averages().table(sort_by="cuda_time_total", row_limit=15)
            print(table, flush=True)
            rows[-1]["profile_top"] = table
        del model, made
        if dev == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    BaseTunerLayer._cast_input_dtype, Linear.forward = plain_cast, plain_forward
    card = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"\n{card}, N = {n_params / 1e9:.2f} B matmul params, ~2,800 tokens per step (8 dialogues)")
    print(f"{'variant':44} {'step s':>8} {'tokens/s':>10} {'MFU 4N':>8} {'peak GiB':>9} {'reserved':>9}")
    for r in rows:
        print(f"{r['variant']:44} {r['step_s']:>8} {r['tokens_per_s']:>10} {r['mfu_4n']:>8.1%} {r['peak_gib']:>9} "
              f"{r['reserved_gib']:>9}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"bench": "lora_step_probe", "card": card, "n_params": n_params, "versions": versions(),
                       "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
