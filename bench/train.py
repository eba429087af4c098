"""Training throughput: plain `swift sft` vs gwq-align's seed/fast recipes, and DPO, on one GPU.

    python bench/train.py                 # GPU: Qwen2-7B-shaped random bf16 model, ~10 min
    python bench/train.py --tiny          # CPU dry run with the tiny model (checks the plumbing)

Each variant is a real training subprocess (ms-swift 4.6) on synthetic dialogues whose
templated token lengths follow the real dataset (349 ± 77 Qwen2 tokens, 1-3 turns). Rates come
from ms-swift's logging.jsonl: elapsed(step) = train_speed(s/it) × steps, tokens =
num_input_tokens_seen (non-padding, see gwq_align/swift_entry.py), between the first logged step
at or after --warmup and the last. seed/DPO-seed log every step; fast/DPO-fast and the 2-GPU run
keep their recipe's logging every 10 steps (so `fast` is measured over steps 10..40).
Two benches can share a 2-GPU host: --gpu 1 (and SKIP_INSTALL=1 for bench/gpu_train.sh).
With --nproc N > 1, f_ (SFT fast) and g_ (DPO fast) run data-parallel over N GPUs.

MFU = tokens/s × FLOPs/token ÷ peak (989 TFLOP/s dense bf16, H100/H200 SXM datasheet).
FLOPs/token, N = parameters doing matmuls (all but the input embedding), attention ignored:
  SFT LoRA on a frozen base: 4N (forward 2N + activation gradients 2N); 6N with checkpointing.
  DPO: policy 4N (6N with checkpointing) + reference forward 2N = 6N (8N).
Peak memory = ms-swift's memory(GiB) (torch.cuda.max_memory_reserved, the caching allocator's peak).

What it leaves out: convergence (the weights are random), multi-node, eval speed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

PEAK_TFLOPS = 989.0
MEAN, STD = 349, 77

# Sentences to build dialogues from: plain replies and their 翻译腔 rewrites.
QUESTIONS = ["今天天气怎么样？", "如何学习编程？", "推荐一本好书吧。", "晚饭吃什么好？", "怎样才能早起？", "为什么要坚持运动？",
             "工作压力太大怎么办？", "怎么和同事相处？", "周末去哪里玩？", "如何存钱？", "学英语有什么窍门？", "失眠了怎么办？"]
PLAIN = ["建议你每天坚持一点，慢慢就会进步。", "可以先从简单的事情做起。", "多休息，注意身体。", "找朋友聊聊会好很多。",
         "列一个计划，按部就班地执行。", "不要着急，循序渐进最重要。", "多读书，多思考。", "保持规律的作息。"]
STYLED = ["我听说，方圆十里的人没有不每日勤练的。", "难道坚持不是成功之道吗？", "嗟乎！古人云：锲而不舍，金石可镂。",
          "呜呼哀哉！若不早起，则一日之计尽废矣。", "吾尝终日而思矣，不如须臾之所学也。", "此事之难，犹如登天；然有志者，事竟成。",
          "方圆百里之内，无人不知此理。", "君不见，千里之行，始于足下乎？", "故曰：业精于勤，荒于嬉。", "此乃人生之至理也，不可不察。"]


def make_rows(n: int, seed: int = 0) -> list[dict]:
    """DPO-ready ms-swift rows (SFT ignores rejected_response) with Qwen2-token lengths ~ N(349, 77)."""
    from gwq_data.tokens import count_tokens

    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        target = int(min(max(rng.gauss(MEAN, STD), 120), 900))
        turns = rng.choice([1, 2, 2, 3])
        messages, total = [{"role": "system", "content": "你是一个说话带古文翻译腔的助手。"}], 30  # template overhead
        per_turn = target // turns
        for t in range(turns):
            q = rng.choice(QUESTIONS)
            reply = ""
            while count_tokens(reply) + count_tokens(q) + 10 < per_turn:
                reply += rng.choice(STYLED)
            messages += [{"role": "user", "content": q}, {"role": "assistant", "content": reply}]
            total += count_tokens(q) + count_tokens(reply) + 10
        rejected = "".join(rng.choice(PLAIN) for _ in range(max(1, count_tokens(messages[-1]["content"]) // 14)))
        rows.append({"messages": messages, "rejected_response": rejected})
    return rows


def run_group(cmd: list[str], env: dict, timeout: float) -> tuple:
    """Run cmd in its own process group; on timeout kill the whole group (gwq-align's ms-swift child too)."""
    import signal

    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return "timeout", out


def rate(run_dir: Path, warmup: int, samples_per_step: int, until: int | None = None) -> dict:
    """Steady-state numbers from logging.jsonl between the first logged step >= `warmup` and the last
    logged step (<= `until`). Times come from ms-swift's cumulative train_speed(s/it) x step."""
    rows = [json.loads(x) for x in (run_dir / "logging.jsonl").read_text().splitlines() if x.strip()]
    steps = []
    for r in rows:
        if "loss" in r and "train_loss" not in r and "num_input_tokens_seen" in r:
            step = int(str(r["global_step/max_steps"]).split("/")[0])
            if until is None or step <= until:
                steps.append((step, r["train_speed(s/it)"] * step, r["num_input_tokens_seen"], r.get("memory(GiB)")))
    # The first logged step at or after `warmup` is the baseline: the slow first steps fall before it.
    later = [x for x in steps if x[0] >= warmup] if warmup else [(0, 0.0, 0, None)] + steps
    if len(later) < 2:
        return {"error": f"only {len(steps)} steps logged ({[x[0] for x in steps]}), none after warmup {warmup}"}
    (s0, t0, k0, _), (s1, t1, k1, _) = later[0], later[-1]
    mem = [m for *_, m in steps if m is not None]
    last = [r for r in rows if "loss" in r and "train_loss" not in r][-1]
    out = {"measured_steps": s1 - s0, "seconds": round(t1 - t0, 2), "tokens": k1 - k0,
           "tokens_per_s": round((k1 - k0) / (t1 - t0), 1), "samples_per_s": round((s1 - s0) * samples_per_step / (t1 - t0), 3),
           "peak_memory_gib": max(mem) if mem else None, "final_loss": last.get("loss"),
           # Rate of each logged interval: shows how steady the window was.
           "interval_tokens_per_s": [round((b[2] - a[2]) / (b[1] - a[1]), 1) for a, b in zip(later, later[1:]) if b[1] > a[1]]}
    for key in ("rewards/margins", "rewards/accuracies"):
        if key in last:
            out[key] = last[key]
    return out


def variants(model: str, data: str, steps: dict, work: Path, nproc: int) -> list[dict]:
    gwq = [sys.executable, "-c", "from gwq_align.cli import app; app()"]
    # Bench-only settings that change no numerics: never save, tokenize in parallel. The slow recipes log
    # every step (a step takes seconds, so the GPU drain a log costs is lost in it). The fast ones keep their
    # recipe's logging_steps=10, as users run them: at ~0.5 s a step, logging every step cost 9% (H200).
    common = ["--model", model, "--dataset", data, "--set", "save_steps=100000",
              "--set", "eval_strategy=no", "--set", "dataset_num_proc=8", "--no-resume", "-q"]
    every_step = ["--set", "logging_steps=1"]
    tutorial = ["--model_type", "qwen2", "--template", "qwen2_5", "--tuner_type", "lora", "--lora_rank", "8",
                "--lora_alpha", "32", "--lora_dropout", "0.05", "--target_modules", "all-linear", "--learning_rate", "5e-5",
                "--num_train_epochs", "1", "--max_length", "1024", "--per_device_train_batch_size", "1",
                "--gradient_accumulation_steps", "16", "--warmup_ratio", "0.03", "--max_grad_norm", "1.0",
                "--gradient_checkpointing", "true", "--eval_steps", "100", "--save_steps", "100000", "--save_total_limit", "2",
                "--torch_dtype", "bfloat16"]
    v = [
        {"name": "a_swift_plain", "kind": "sft", "ckpt": True, "spb": 16,
         "cmd": [sys.executable, "-m", "swift.cli.sft", "--model", model, "--dataset", data, *tutorial,
                 "--logging_steps", "1", "--max_steps", str(steps["seed"]), "--output_dir", str(work / "a"),
                 "--add_version", "false", "--check_model", "false", "--report_to", "none", "--split_dataset_ratio", "0",
                 "--dataset_num_proc", "8",
                 "--include_num_input_tokens_seen", "true"], "dir": work / "a"},
        {"name": "b_gwq_seed", "kind": "sft", "ckpt": True, "spb": 16,
         "cmd": gwq + ["sft", *common, *every_step, "--recipe", "seed", "--max-steps", str(steps["seed"]), "--output-dir", str(work / "b")],
         "dir": work / "b"},
        {"name": "c_gwq_fast", "kind": "sft", "ckpt": False, "spb": 16,
         "cmd": gwq + ["sft", *common, "--recipe", "fast", "--max-steps", str(steps["fast"]), "--output-dir", str(work / "c")],
         "dir": work / "c"},
        {"name": "d_gwq_dpo_seed", "kind": "dpo", "ckpt": True, "spb": 16,
         "cmd": gwq + ["dpo", *common, *every_step, "--recipe", "seed", "--max-steps", str(steps["dpo_seed"]), "--output-dir", str(work / "d")],
         "dir": work / "d"},
        {"name": "e_gwq_dpo_fast", "kind": "dpo", "ckpt": False, "spb": 16,
         "cmd": gwq + ["dpo", *common, "--recipe", "fast", "--max-steps", str(steps["dpo_fast"]), "--output-dir", str(work / "e")],
         "dir": work / "e"},
        {"name": "h_gwq_fast_24gb", "kind": "sft", "ckpt": True, "spb": 16,
         "cmd": gwq + ["sft", *common, "--recipe", "fast-24gb", "--max-steps", str(steps["fast"]), "--output-dir", str(work / "h")],
         "dir": work / "h"},
        {"name": "i_gwq_dpo_fast_24gb", "kind": "dpo", "ckpt": True, "spb": 16,
         "cmd": gwq + ["dpo", *common, "--recipe", "fast-24gb", "--max-steps", str(steps["dpo_fast"]), "--output-dir", str(work / "i")],
         "dir": work / "i"},
    ]
    if nproc > 1:
        v.append({"name": f"f_gwq_fast_{nproc}gpu", "kind": "sft", "ckpt": False, "spb": 16 * nproc,
                  "cmd": gwq + ["sft", *common, "--recipe", "fast", "--max-steps", str(steps["fast"]), "--nproc-per-node",
                                str(nproc), "--output-dir", str(work / "f")], "dir": work / "f"})
        v.append({"name": f"g_gwq_dpo_fast_{nproc}gpu", "kind": "dpo", "ckpt": False, "spb": 16 * nproc,
                  "cmd": gwq + ["dpo", *common, "--recipe", "fast", "--max-steps", str(steps["dpo_fast"]),
                                "--nproc-per-node", str(nproc), "--output-dir", str(work / "g")], "dir": work / "g"})
    return v


def flops_params(model_dir: str) -> int:
    """Parameters that do matmuls per token: everything but the input embedding."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    h, i, L, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * (h // cfg["num_attention_heads"])
    per_layer = h * h + 2 * h * kv + h * h + 3 * h * i  # q, k+v, o, gate/up/down (biases ignored)
    return L * per_layer + h * v                        # + lm_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="CPU dry run with the tiny model")
    ap.add_argument("--model-dir", default="/tmp/gwq-bench-model")
    ap.add_argument("--work", default="/tmp/gwq-bench")
    ap.add_argument("--out-dir", default=str(REPO / "bench/results"), help="writes train-<card>.json here")
    ap.add_argument("--only", default="", help="comma-separated variant names (prefixes) to run")
    ap.add_argument("--warmup", type=int, default=2, help="optimizer steps left out of the rates (the first logged "
                    "step at or after this one is the baseline; fast recipes log every 10 steps)")
    ap.add_argument("--steps", default="seed=5,fast=41,dpo_seed=4,dpo_fast=31")
    ap.add_argument("--gpu", default="0", help="the GPU for one-GPU variants (two bench processes can share a 2-GPU host)")
    ap.add_argument("--rows", type=int, default=800)
    ap.add_argument("--nproc", type=int, default=1)
    ap.add_argument("--timeout", type=int, default=300, help="seconds per variant")
    ap.add_argument("--deadline", type=float, default=0, help="stop starting variants after this many seconds")
    ap.add_argument("--hard-deadline", type=float, default=0, help="cut the running variant at this many seconds")
    ap.add_argument("--try", dest="tries", action="append", default=[],
                    help="extra variant NAME:BASE:key=value,key=value (BASE a variant name), e.g. c_nodrop:c_gwq_fast:lora_dropout=0")
    ap.add_argument("--tails", default="", help="append each variant's last log lines here")
    ap.add_argument("--profile", default="", help="comma-separated variant names: torch.profiler over their last "
                    "step (bench/profile_hook), which are then left out of the rates")
    ap.add_argument("--sync-debug", default="", help="comma-separated variant names: count host<-device syncs by "
                    "caller over two steps before the end (bench/profile_hook), left out of the rates")
    args = ap.parse_args()
    t_start = time.time()
    steps = {"seed": 5, "fast": 41, "dpo_seed": 4, "dpo_fast": 31}
    steps.update({k: int(v) for k, v in (x.split("=") for x in args.steps.split(","))})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", MODELSCOPE_OFFLINE="1",
                      NCCL_NVLS_ENABLE="0", TORCH_SYMM_MEM_DISABLE_MULTICAST="1", NVSHMEM_DISABLE_NVLS="1")

    from gwq_align.runrecord import versions

    # GPU work happens in child processes only, so this one holds no CUDA memory during the runs.
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").is_file():
        t = time.time()
        build = ("build_tiny_model(Path(d))" if args.tiny else
                 "build_model(Path(d), qwen2_7b_config(), device='cuda')")
        subprocess.run([sys.executable, "-c", f"from pathlib import Path; from gwq_align.tiny import *; d={str(model_dir)!r}; "
                        + build], cwd=REPO, check=True)
        print(f"built {model_dir} in {time.time() - t:.1f}s", flush=True)
    hw = json.loads(subprocess.check_output([sys.executable, "-c", "import json; from gwq_align.runrecord import hardware; "
                                             "print(json.dumps(hardware()))"], cwd=REPO, text=True))
    data = work / "dialogues.jsonl"
    rows = make_rows(args.rows)
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))

    card = (hw["gpu_name"] or "cpu").replace("NVIDIA ", "").replace(" ", "-")
    n_params = flops_params(str(model_dir))
    n_layers = json.loads((model_dir / "config.json").read_text())["num_hidden_layers"]
    result = {"bench": "train", "card": hw["gpu_name"] or "cpu", "hardware": hw, "versions": versions(),
              "model": "tiny" if args.tiny else "Qwen2-7B shape (random bf16)", "flops_params_N": n_params,
              "peak_tflops": PEAK_TFLOPS, "dataset": {"rows": len(rows), "target_tokens": f"{MEAN}±{STD}"},
              "warmup_steps_excluded": args.warmup, "results": []}
    out = Path(args.out_dir) / f"train-{card}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    only = [x for x in args.only.split(",") if x]
    todo = variants(str(model_dir), str(data), steps, work, args.nproc)
    for spec in args.tries:
        name, base, sets = spec.split(":", 2)
        parent = next(x for x in todo if x["name"] == base)  # a variant or an earlier --try
        v = dict(parent, name=name, dir=work / name, env=dict(parent.get("env", {})))
        v["cmd"] = [str(work / name) if c == str(parent["dir"]) else c for c in v["cmd"]]
        batch = {}
        for kv in filter(None, sets.split(",")):
            if kv.startswith("env."):  # env.GWQ_PEFT_INPUT_CAST=1: an environment variable for this variant
                key, _, value = kv[4:].partition("=")
                v["env"][key] = value
                continue
            v["cmd"] += ["--set", kv]
            if kv.startswith("gradient_checkpointing="):
                v["ckpt"] = kv.endswith("true")
            if kv.startswith(("per_device_train_batch_size=", "gradient_accumulation_steps=")):
                key, _, value = kv.partition("=")
                batch[key] = int(value)
        if batch:  # samples/s is computed from the effective batch: keep it at the base's
            if batch.get("per_device_train_batch_size", 0) * batch.get("gradient_accumulation_steps", 0) != v["spb"]:
                raise SystemExit(f"--try {name}: set both batch keys, with product {v['spb']} (the base's batch)")
        todo.append(v)
    if only:  # run in the order given, so the most wanted numbers come first
        names = {v["name"] for v in todo}
        todo = [v for o in only for v in todo if (v["name"] == o if o in names else v["name"].startswith(o))]
    for v in todo:
        if args.deadline and time.time() - t_start > args.deadline:
            result["results"].append({"name": v["name"], "error": "skipped: bench deadline reached"})
            continue
        extra = ["--set", "torch_dtype=float32", "--set", "max_length=256", "--set", "use_liger_kernel=false"] if args.tiny and "gwq_align.cli" in v["cmd"][2] else []
        cmd = v["cmd"] + extra
        if args.tiny and "swift.cli.sft" in cmd:
            cmd = [("float32" if c == "bfloat16" else c) for c in cmd]
        print(f"== {v['name']}: {shlex.join(cmd)}", flush=True)
        # A fresh scratch dir: gwq refuses to overwrite an earlier run's checkpoints, and rates must come
        # from this run's logs only (a warm machine keeps the last call's /tmp).
        shutil.rmtree(v["dir"], ignore_errors=True)
        shutil.rmtree(work / f"profile-{v['name']}", ignore_errors=True)
        (work / f"syncs-{v['name']}.txt").unlink(missing_ok=True)
        t = time.time()
        timeout = args.timeout
        if args.hard_deadline:
            timeout = max(30, min(timeout, int(args.hard_deadline - (time.time() - t_start))))
        # One GPU unless the variant is the data-parallel one: with several GPUs visible and no
        # torchrun, ms-swift would split the model across them (device_map), not what we measure.
        multi = v["name"].startswith(("f_", "g_"))  # the data-parallel variants
        gpus = ",".join(str(i) for i in range(args.nproc)) if multi else args.gpu
        env = dict(os.environ, CUDA_VISIBLE_DEVICES=gpus, **v.get("env", {}))
        until = None
        hook = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "bench/profile_hook"), env.get("PYTHONPATH")]))}
        last = int(cmd[cmd.index("--max-steps") + 1]) if "--max-steps" in cmd else 0
        if v["name"] in args.profile.split(","):
            until = last - 2  # the profiled last step runs slower; rates end before it
            env.update(hook, GWQ_PROFILE=f"{work / ('profile-' + v['name'])}:{last - 1}:{last}")
        if v["name"] in args.sync_debug.split(","):
            stop = last - 2 if until else last  # before the profiled step when both are asked for
            until = stop - 3  # warnings with stacks slow these steps down
            env.update(hook, GWQ_SYNC_DEBUG=f"{work / ('syncs-' + v['name'] + '.txt')}:{stop - 2}:{stop}")
        code, log = run_group(cmd, env, timeout)
        entry = {"name": v["name"], "kind": v["kind"], "wall_s": round(time.time() - t, 1), "exit": code,
                 "command": shlex.join(cmd)}
        try:
            entry.update(rate(v["dir"], args.warmup, v["spb"], until))
            if v.get("env"):
                entry["env"] = v["env"]
            syncs = work / f"syncs-{v['name']}.txt"
            if v["name"] in args.sync_debug.split(",") and syncs.is_file():
                entry["syncs"] = syncs.read_text().splitlines()
            if "GWQ_PROFILE" in env:
                prof = work / f"profile-{v['name']}"
                entry["profile"] = json.loads((prof / "summary.json").read_text())
                if args.tails:
                    with open(args.tails, "a") as f:
                        f.write(f"\n===== {v['name']} profile\n" + (prof / "cuda_kernels.txt").read_text()
                                + (prof / "cpu_ops.txt").read_text())
        except (OSError, ValueError, KeyError, IndexError) as e:
            entry["error"] = f"no rates: {type(e).__name__}: {e}"
        if entry.get("tokens_per_s"):
            recomputed = 1.0 if v["ckpt"] else 0.0  # share of the layers whose forward runs twice
            record = v["dir"] / "gwq_run.json"
            if record.is_file():  # what the run really did, from its resolved arguments
                ran = json.loads(record.read_text()).get("args", {})
                recomputed = 0.0
                if ran.get("gradient_checkpointing"):
                    layers = ran.get("gwq_checkpoint_layers")
                    recomputed = 1.0 if layers is None else min(1.0, int(layers) / n_layers)
            entry["recomputed_layers_share"] = round(recomputed, 3)
            per_token = round(4 + 2 * recomputed + (2 if v["kind"] == "dpo" else 0), 2)
            entry["flops_per_token"] = f"{per_token:g}N"
            gpus_used = args.nproc if multi else 1
            entry["mfu"] = round(entry["tokens_per_s"] * per_token * n_params / (gpus_used * PEAK_TFLOPS * 1e12), 4)
        if code != 0:
            entry["log_tail"] = log.splitlines()[-15:]
        if args.tails:
            with open(args.tails, "a") as f:
                f.write(f"\n===== {v['name']} exit={code}\n" + "\n".join(log.splitlines()[-60:]) + "\n")
        result["results"].append(entry)
        print(json.dumps({k: v2 for k, v2 in entry.items() if k not in ("command", "log_tail")}), flush=True)
        out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    table(result)
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print(f"wrote {out} ({card})")


def table(result: dict) -> None:
    cols = ["name", "tokens_per_s", "samples_per_s", "peak_memory_gib", "flops_per_token", "mfu", "exit"]
    print(f"\ncard: {result['card']}  N={result['flops_params_N'] / 1e9:.2f}B")
    print(" | ".join(f"{c:>16}" for c in cols))
    for r in result["results"]:
        print(" | ".join(f"{str(r.get(c, '-')):>16}" for c in cols))


if __name__ == "__main__":
    main()
