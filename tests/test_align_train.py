"""gwq-align sft/dpo end to end on CPU with the tiny Qwen2: real ms-swift runs, a few steps each."""

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import gwq_cmd

STYLED = "我听说，方圆十里的人没有不每日勤练的。难道坚持不是成功之道吗？嗟乎！古人云：锲而不舍，金石可镂。"
PLAIN = "建议你多练习，每天坚持一点。"


@pytest.fixture(scope="module")
def toy_pairs(tmp_path_factory):
    """32 ms-swift rows: styled reply chosen, plain reply rejected (the DPO layout; SFT ignores the extra key)."""
    path = tmp_path_factory.mktemp("toy") / "pairs.jsonl"
    questions = ["今天天气怎么样？", "如何学习编程？", "推荐一本书。", "怎样才能早起？"]
    with open(path, "w", encoding="utf-8") as f:
        for i in range(32):
            row = {"messages": [{"role": "user", "content": f"{questions[i % 4]}（{i}）"},
                                {"role": "assistant", "content": STYLED}], "rejected_response": PLAIN}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def align(*args, check=True):
    # A wide terminal so rich keeps each message on one line.
    out = subprocess.run(gwq_cmd("gwq-align") + [str(a) for a in args], capture_output=True, text=True, timeout=400,
                         env=dict(os.environ, COLUMNS="1000"))
    if check:
        assert out.returncode == 0, out.stderr[-3000:]
    return out


def record(run_dir):
    return json.loads((run_dir / "gwq_run.json").read_text())


def logged(run_dir, key):
    rows = [json.loads(x) for x in (run_dir / "logging.jsonl").read_text().splitlines() if x.strip()]
    return [r[key] for r in rows if key in r and "train_loss" not in r]


def sft_args(model, data, out, steps=6):
    return ["sft", "--model", model, "--dataset", data, "--output-dir", out, "--recipe", "cpu-tiny",
            "--max-steps", steps, "--save-steps", 3, "-q"]


@pytest.fixture(scope="module")
def sft_run(tiny_model, toy_pairs, tmp_path_factory):
    """Padding-free on sdpa (the `fast` recipe's batching); the Ctrl-C test runs the same data padded."""
    out = tmp_path_factory.mktemp("runs") / "sft"
    align(*sft_args(tiny_model, toy_pairs, out), "--set", "padding_free=true", "--set", "attn_impl=sdpa")
    return out


@pytest.mark.slow
def test_sft_loss_falls_and_every_lora_weight_changes(sft_run, tiny_model, toy_pairs):
    from safetensors.torch import load_file

    rec = record(sft_run)
    assert rec["status"] == "succeeded" and rec["error"] is None
    assert rec["adapter"] == "checkpoint-6" and rec["kind"] == "sft" and rec["recipe"] == "cpu-tiny"
    assert rec["base_model"] == str(tiny_model.resolve())
    assert rec["dataset"]["files"][0]["rows"] == 32 and len(rec["dataset"]["files"][0]["sha256"]) == 64
    assert rec["swift_command"].startswith("swift sft --model ")
    assert rec["tokens_seen"] > 0 and rec["metrics"]["final"]["step"] == 6
    losses = logged(sft_run, "loss")
    assert len(losses) == 6 and losses[-1] < losses[0]

    # LoRA B starts at zero and A gets no gradient until B moves, so: every B is non-zero at the end,
    # and every tensor (A and B) moved between the step-3 and step-6 checkpoints.
    mid = load_file(sft_run / "checkpoint-3" / "adapter_model.safetensors")
    end = load_file(sft_run / "checkpoint-6" / "adapter_model.safetensors")
    assert mid.keys() == end.keys() and len(end) == 2 * 7 * 2  # A,B × 7 linear layers × 2 blocks
    for name, tensor in end.items():
        assert not tensor.equal(mid[name]), f"{name} did not change"
        if "lora_B" in name:
            assert tensor.abs().sum() > 0, f"{name} is still zero"


@pytest.mark.slow
def start_until_first_checkpoint(args, out, **popen) -> subprocess.Popen:
    """Start `gwq-align ARGS` and return once checkpoint-3 is complete (its trainer_state.json written)."""
    proc = subprocess.Popen(gwq_cmd("gwq-align") + [str(a) for a in args], **popen)
    first = out / "checkpoint-3" / "trainer_state.json"
    deadline = time.monotonic() + 300
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert first.exists(), (proc.communicate()[1] or "")[-2000:]
    return proc


def test_ctrl_c_then_same_command_resumes(tiny_model, toy_pairs, tmp_path, sft_run):
    out = tmp_path / "sft"
    proc = start_until_first_checkpoint(sft_args(tiny_model, toy_pairs, out, steps=9), out,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    rec = record(out)
    assert rec["status"] == "failed" and "interrupted" in rec["error"] and rec["adapter"] is None

    done = align(*sft_args(tiny_model, toy_pairs, out, steps=9))
    rec = record(out)
    assert rec["status"] == "succeeded" and rec["adapter"] == "checkpoint-9"
    assert rec["resumed_from"].endswith(("checkpoint-3", "checkpoint-6")), done.stderr[-1000:]
    resumed_at = int(rec["resumed_from"].rsplit("-", 1)[1])
    steps = [int(s.split("/")[0]) for s in logged(out, "global_step/max_steps")]
    assert steps[-1] == 9 and resumed_at + 1 in steps  # the second session started after the checkpoint
    # Same seed, same first batch, padded here and padding-free in sft_run: the same first loss.
    assert logged(out, "loss")[0] == pytest.approx(logged(sft_run, "loss")[0], rel=1e-4)


@pytest.mark.slow
def test_dpo_from_base_separates_chosen_from_rejected(tiny_model, toy_pairs, tmp_path):
    out = tmp_path / "dpo"
    align("dpo", "--model", tiny_model, "--dataset", toy_pairs, "--output-dir", out, "--recipe", "cpu-tiny",
          "--max-steps", 4, "--save-steps", 4, "-q")
    rec = record(out)
    assert rec["status"] == "succeeded" and rec["from_sft"] is None
    assert rec["args"]["beta"] == 0.1 and rec["args"]["rpo_alpha"] == 1.0 and rec["args"]["rlhf_type"] == "dpo"
    assert rec["swift_command"].startswith("swift rlhf ")
    final = rec["metrics"]["final"]
    assert final["rewards/margins"] > 0
    assert final["rewards/accuracies"] > 0.5


@pytest.mark.slow
def test_dpo_from_sft_trains_the_sft_adapter_against_itself(sft_run, tiny_model, toy_pairs, tmp_path):
    out = tmp_path / "dpo-chain"
    align("dpo", "--model", tiny_model, "--dataset", toy_pairs, "--output-dir", out, "--from-sft", sft_run,
          "--recipe", "cpu-tiny", "--max-steps", 2, "--save-steps", 2, "-q")
    rec = record(out)
    sft_adapter = str((sft_run / "checkpoint-6").resolve())
    assert rec["status"] == "succeeded" and rec["from_sft"] == str(sft_run)
    assert rec["args"]["adapters"] == [sft_adapter] and rec["args"]["ref_adapters"] == [sft_adapter]
    # Step 1 compares the policy with its own frozen copy: no margin yet, so the reference is the SFT model.
    assert logged(out, "rewards/margins")[0] == pytest.approx(0.0, abs=1e-4)
    from safetensors.torch import load_file
    start = load_file(sft_run / "checkpoint-6" / "adapter_model.safetensors")
    end = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    assert start.keys() == end.keys()
    assert any(not end[k].equal(start[k]) for k in start)


@pytest.mark.slow
def test_seed_recipe_reaches_swift_unchanged(tiny_model, toy_pairs, tmp_path):
    """The tutorial's numbers arrive in ms-swift's own args.json (no training: max_steps 0 is refused, so 1 step)."""
    out = tmp_path / "seed"
    align("sft", "--model", tiny_model, "--dataset", toy_pairs, "--output-dir", out, "--recipe", "seed",
          "--max-steps", 1, "--grad-accum", 1, "--set", "torch_dtype=float32", "--set", "max_length=256",
          "--set", "dataloader_num_workers=0", "-q")
    swift_args = json.loads((out / "args.json").read_text())
    expect = {"lora_rank": 8, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": ["all-linear"],
              "learning_rate": 5e-5, "num_train_epochs": 1, "per_device_train_batch_size": 1, "warmup_ratio": 0.03,
              "max_grad_norm": 1.0, "gradient_checkpointing": True, "eval_steps": 100, "save_steps": 100,
              "save_total_limit": 2, "logging_steps": 10, "tuner_type": "lora", "add_version": False}
    assert {k: swift_args[k] for k in expect} == expect


def test_bad_inputs_give_one_line(tiny_model, toy_pairs, tmp_path):
    no_rejected = tmp_path / "sft_only.jsonl"
    no_rejected.write_text('{"messages": [{"role": "user", "content": "问"}, {"role": "assistant", "content": "答"}]}\n' * 2,
                           encoding="utf-8")
    not_a_model = tmp_path / "empty_model"
    not_a_model.mkdir()
    cases = [
        (["sft", "--model", tiny_model, "--dataset", tmp_path / "missing.jsonl"], "missing.jsonl: dataset not found"),
        (["dpo", "--model", tiny_model, "--dataset", no_rejected], f"{no_rejected}:1: no_rejected_response"),
        (["sft", "--model", not_a_model, "--dataset", toy_pairs], "empty_model: no config.json; not a model directory"),
        (["sft", "--model", "Qwen/Qwen2.5-7B-Instruct", "--dataset", toy_pairs], "hub is switched off"),
        (["sft", "--model", tiny_model, "--dataset", toy_pairs, "--recipe", "nope"], "unknown recipe 'nope'"),
        (["dpo", "--model", tiny_model, "--dataset", toy_pairs, "--from-sft", tmp_path], "no gwq_run.json"),
    ]
    (tmp_path / "sft_run").mkdir()
    (tmp_path / "sft_run" / "gwq_run.json").write_text('{"kind": "sft", "status": "succeeded"}')
    out = align("dpo", "--model", tiny_model, "--dataset", toy_pairs, "--output-dir", tmp_path / "sft_run", check=False)
    assert out.returncode == 2 and "holds a sft run; choose another --output-dir" in out.stderr
    for args, message in cases:
        out = align(*args, "--output-dir", tmp_path / "run", check=False)
        lines = [x for x in out.stderr.splitlines() if x.strip()]
        assert out.returncode == 2, out.stderr
        assert len(lines) == 1 and message in lines[0], out.stderr
        assert "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()  # nothing started


@pytest.mark.parametrize("command", ["sft", "dpo", "tiny-model"])
def test_help(command):
    out = subprocess.run(gwq_cmd("gwq-align") + [command, "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "Example:" in out.stdout


@pytest.mark.parametrize("attn", ["sdpa", "gwq_varlen"])
def test_packed_rows_see_only_their_own_dialogue(tiny_model, attn):
    """What lets gwq run padding_free on sdpa (gwq_align/swift_entry.py): transformers builds a
    per-dialogue causal mask from restarting position_ids, so packed logits equal separate ones.
    gwq_varlen is that same sdpa on CPU (its CUDA kernel path: tests/test_align_attention.py)."""
    import torch
    from transformers import AutoModelForCausalLM

    from gwq_align import attention

    attention.register()
    device, dtype, atol = "cpu", torch.float32, 1e-4
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=dtype, attn_implementation=attn).to(device).eval()
    a, b = (torch.randint(0, 150000, (1, n)).to(device) for n in (7, 5))
    with torch.no_grad():
        separate = torch.cat([model(a).logits, model(b).logits], dim=1)
        # use_cache=False as in training (ms-swift sets it): with a cache transformers skips the packed mask.
        packed = model(torch.cat([a, b], dim=1), position_ids=torch.tensor([list(range(7)) + list(range(5))]).to(device),
                       use_cache=False).logits
        leaky = model(torch.cat([a, b], dim=1), use_cache=False).logits
    assert torch.allclose(packed.float(), separate.float(), atol=atol)
    assert not torch.allclose(leaky[:, 7:].float(), separate[:, 7:].float(), atol=atol)  # without position_ids b would see a


@pytest.mark.slow
def test_deferred_token_count_matches_transformers_own(tiny_model, toy_pairs, tmp_path):
    """gwq keeps the token count on the device between logs (swift_entry.defer_token_count): the
    logged counts and the count saved with a checkpoint must equal transformers' eager `.item()` count.
    Grad-accum 2, logging every 2 steps and saving at 3, so counts pile up across micro-steps and a
    save lands between two logs."""
    runs = {}
    for mode, env in (("deferred", {}), ("eager", {"GWQ_EAGER_TOKEN_COUNT": "1"})):
        out = tmp_path / mode
        args = sft_args(tiny_model, toy_pairs, out) + ["--set", "logging_steps=2", "--set", "gradient_accumulation_steps=2",
                                                       "--set", "per_device_train_batch_size=2"]
        result = subprocess.run(gwq_cmd("gwq-align") + [str(a) for a in args], capture_output=True, text=True,
                                timeout=400, env=dict(os.environ, COLUMNS="1000", **env))
        assert result.returncode == 0, result.stderr[-3000:]
        saved = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())["num_input_tokens_seen"]
        runs[mode] = (logged(out, "num_input_tokens_seen"), saved, record(out)["tokens_seen"])
    counts, saved, total = runs["deferred"]
    assert len(counts) >= 3 and counts == sorted(counts) and 0 < saved < total
    assert runs["deferred"] == runs["eager"]
