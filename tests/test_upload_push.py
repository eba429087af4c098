"""gwq-align push against the local ModelScope hub: adapter and merged uploads, model card, configuration.json.

Two run directories: a real one-step `gwq-align sft --recipe cpu-tiny` run, and one built here to the
gwq_run.json contract around a peft LoRA adapter with non-zero B weights (so merging visibly changes the
model, and the golden card has fixed numbers) on the session's tiny Qwen2."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import REPO, gwq_cmd
from modelscope_server import HubServer

TOKEN = "ms-push-5e4d3c2b1a-secret"
GOLDEN = REPO / "tests" / "golden" / "upload"


@pytest.fixture(scope="module")
def run_dir(tiny_model, tmp_path_factory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "sft"
    ckpt = run / "checkpoint-2"
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(ckpt)
    # Training leftovers that must never be uploaded (ms-swift's args.json can carry a hub token).
    (ckpt / "optimizer.pt").write_bytes(b"\0" * 1024)
    (ckpt / "args.json").write_text(json.dumps({"hub_token": TOKEN}))
    (ckpt / "additional_config.json").write_text(json.dumps({"lora_dtype": None, "lorap_lr_ratio": None}))
    (ckpt / "trainer_state.json").write_text("{}")
    (run / "compare.md").write_text("# Compare\n\n| model | tone | meaning |\n|---|---|---|\n| base | 0.05 | 1.00 |\n"
                                    "| sft | 0.81 | 0.93 |\n\nMore text.\n", encoding="utf-8")
    record = {
        "gwq_run_version": 1, "kind": "sft", "status": "succeeded", "error": None,
        "command": f"gwq-align sft --model {tiny_model} --dataset out/prepared --output-dir {run} --recipe cpu-tiny",
        "swift_command": f"swift sft --model {tiny_model} --model_type qwen2 --template qwen2_5 --tuner_type lora "
                         f"--dataset out/prepared/sft/train.jsonl --learning_rate 0.0001 --hub_token {TOKEN}",
        "recipe": "cpu-tiny", "base_model": str(tiny_model), "adapter": "checkpoint-2", "from_sft": None,
        "args": {"tuner_type": "lora", "lora_rank": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
                 "learning_rate": 1e-4, "num_train_epochs": 1, "max_steps": 2, "per_device_train_batch_size": 1,
                 "max_length": 512, "seed": 42, "template": "qwen2_5"},
        "dataset": {"files": [{"path": "/home/me/out/prepared/sft/train.jsonl", "sha256": "ab" * 32, "rows": 24,
                               "split": "train"}]},
        "versions": {"python": "3.11.7", "torch": "2.13.0", "ms-swift": "4.6.0", "gwq": "0.1.0"},
        "git_commit": "0123456789abcdef0123", "hardware": {"device": "cpu", "gpu_name": None, "gpu_count": 0,
                                                          "cpu_count": 2},
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:30+00:00", "wall_s": 30.2,
        "tokens_seen": 4096, "tokens_per_s": 135.6, "peak_memory_gib": 1.2,
        "metrics": {"final": {"loss": 11.2, "grad_norm": 0.34, "eval_loss": 11.9, "eval_runtime": 0.37, "step": 2},
                    "best": {"eval_loss": 11.9, "step": 2}},
    }
    (run / "gwq_run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def real_run(tiny_model, tmp_path_factory) -> Path:
    """A real `gwq-align sft --recipe cpu-tiny` run (one step) on the card fixture's prepared dir."""
    out = tmp_path_factory.mktemp("real") / "sft"
    res = subprocess.run(gwq_cmd("gwq-align") + ["sft", "--model", str(tiny_model), "--dataset",
                                                 str(REPO / "tests" / "data" / "upload_prepared"), "--output-dir",
                                                 str(out), "--recipe", "cpu-tiny", "--max-steps", "1",
                                                 "--save-steps", "1", "-q"],
                         capture_output=True, text=True, timeout=400, env=dict(os.environ, COLUMNS="400"))
    assert res.returncode == 0, res.stderr[-2000:]
    return out


@pytest.fixture
def hub():
    with HubServer({TOKEN: "alice"}) as server:
        yield server


def push(hub, *args, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = dict(os.environ, MODELSCOPE_ENDPOINT=hub.url, COLUMNS="400")
    env.pop("MODELSCOPE_API_TOKEN", None)
    if token:
        env["MODELSCOPE_API_TOKEN"] = token
    return subprocess.run(gwq_cmd("gwq-align") + ["push", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_help():
    out = subprocess.run(gwq_cmd("gwq-align") + ["push", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--merge" in out.stdout and "Example:" in out.stdout


def test_push_adapter_with_card_and_configuration(hub, run_dir, isolated_home):
    res = push(hub, run_dir, "--repo", "alice/guwen-lora", "--private", "--dataset", "alice/gwq-zh",
               "--base-model", "Qwen/Qwen2.5-0.5B-Instruct")
    assert res.returncode == 0, res.stderr
    repo = hub.state.repos[("models", "alice/guwen-lora")]
    assert repo.private
    files = hub.state.files("models", "alice/guwen-lora")
    ckpt = run_dir / "checkpoint-2"
    assert set(files) == {"adapter_model.safetensors", "adapter_config.json", "additional_config.json",
                          "configuration.json", "README.md"}
    assert files["adapter_model.safetensors"] == (ckpt / "adapter_model.safetensors").read_bytes()
    config = json.loads(files["adapter_config.json"])
    assert config["base_model_name_or_path"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert {k: v for k, v in config.items() if k != "base_model_name_or_path"} == \
        {k: v for k, v in json.loads((ckpt / "adapter_config.json").read_text()).items() if k != "base_model_name_or_path"}
    assert json.loads(files["configuration.json"]) == {"framework": "pytorch", "task": "text-generation",
                                                       "allow_remote": True}
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct" and meta["datasets"] == ["alice/gwq-zh"]
    assert "gwq-align sft --model" in card and "swift sft --model" in card and "| sft | 0.81 | 0.93 |" in card
    for text in (res.stdout, res.stderr, *(b.decode(errors="replace") for b in files.values())):
        assert TOKEN not in text
    for path in isolated_home.rglob("*"):
        assert not path.is_file() or TOKEN.encode() not in path.read_bytes()


@pytest.mark.slow
def test_push_a_real_cpu_tiny_run(hub, real_run):
    record = json.loads((real_run / "gwq_run.json").read_text())
    res = push(hub, real_run, "--repo", "alice/tiny-real", "--base-model", "Qwen/Qwen2.5-0.5B-Instruct")
    assert res.returncode == 0, res.stderr
    files = hub.state.files("models", "alice/tiny-real")
    ckpt = real_run / record["adapter"]
    assert files["adapter_model.safetensors"] == (ckpt / "adapter_model.safetensors").read_bytes()
    assert (ckpt / "optimizer.pt").is_file() and (ckpt / "args.json").is_file()  # there, and left behind:
    assert set(files) == {"adapter_model.safetensors", "adapter_config.json", "additional_config.json",
                          "configuration.json", "README.md"}
    card = files["README.md"].decode()
    assert record["command"] in card and "--tuner_type lora" in card
    assert f"| eval_loss | {record['metrics']['final']['eval_loss']:.6g} |" in card


def test_model_card_golden(run_dir, tiny_model):
    from gwq_align.model_card import find_compare_report, model_card, read_run

    record = read_run(run_dir)
    card = model_card(record, repo="alice/guwen-lora", merged=False, base_model="Qwen/Qwen2.5-0.5B-Instruct",
                      dataset="alice/gwq-zh", compare=find_compare_report(run_dir))
    card = card.replace(str(tiny_model), "<TINY_MODEL>").replace(str(run_dir), "<RUN_DIR>")
    golden = GOLDEN / "model_card.md"
    if os.environ.get("GWQ_UPDATE_GOLDEN"):
        golden.write_text(card, encoding="utf-8")
    assert card == golden.read_text(encoding="utf-8")


@pytest.mark.slow
def test_push_merged_model_loads_and_matches_the_adapter(hub, run_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    res = push(hub, run_dir, "--repo", "alice/guwen-merged", "--merge")
    assert res.returncode == 0, res.stderr
    assert "local path" in res.stderr  # the warning about an unshareable base_model
    files = hub.state.files("models", "alice/guwen-merged")
    assert {"model.safetensors", "config.json", "tokenizer.json", "configuration.json", "README.md"} <= set(files)
    assert not any(name.startswith("adapter_") for name in files)
    local = tmp_path / "merged"
    local.mkdir()
    for name, data in files.items():
        (local / name).write_bytes(data)
    record = json.loads((run_dir / "gwq_run.json").read_text())
    merged = AutoModelForCausalLM.from_pretrained(local)
    ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(record["base_model"]),
                                    str(run_dir / "checkpoint-2"))
    base = AutoModelForCausalLM.from_pretrained(record["base_model"])
    ids = torch.tensor([[151644, 872, 198, 108386, 151645]])
    with torch.no_grad():
        got, want, plain = merged(ids).logits, ref(ids).logits, base(ids).logits
    # bf16 weights: merging rounds once more than the unmerged adapter does, so compare error sizes.
    err, effect = (got - want).abs().max().item(), (want - plain).abs().max().item()
    assert err < effect / 4, (err, effect)
    assert "library_name: transformers" in files["README.md"].decode()


def test_dry_run_and_bad_run_dirs(hub, run_dir, tmp_path):
    staging = tmp_path / "staging"
    res = push(hub, run_dir, "--repo", "alice/guwen-lora", "--dry-run", "--staging", staging, token=None)
    assert res.returncode == 0, res.stderr
    assert hub.state.log == []
    assert sorted(p.name for p in staging.iterdir()) == ["README.md", "adapter_config.json", "adapter_model.safetensors",
                                                         "additional_config.json", "configuration.json"]
    assert "base_model:" in res.stdout

    res = push(hub, tmp_path, "--repo", "alice/x")
    assert res.returncode == 2 and "gwq_run.json" in res.stderr
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "gwq_run.json").write_text(json.dumps({"status": "failed", "error": "CUDA out of memory"}))
    res = push(hub, failed, "--repo", "alice/x")
    assert res.returncode == 2 and "'failed'" in res.stderr and "out of memory" in res.stderr
    assert hub.state.log == []
