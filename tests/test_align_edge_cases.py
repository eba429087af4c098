"""Re-runs, stale checkpoints, secrets and bad arguments: each gives one line or a no-op, never a second run's mess."""

import json

from gwq_align import model_card
from gwq_align.runrecord import redact_argv
from test_align_train import align, record, sft_args, toy_pairs  # noqa: F401  (toy_pairs is a fixture)

SECRET = "ms-THISISNOTAREALTOKEN42"


def test_secrets_on_the_command_line_are_redacted_everywhere_we_write():
    argv = ["gwq-align", "sft", "--set", f"hub_token={SECRET}", "--hub-token", SECRET, f"--api_key={SECRET}", "--lr", "1e-4"]
    assert SECRET not in " ".join(redact_argv(argv)) and "1e-4" in redact_argv(argv)
    assert SECRET not in model_card._redact(" ".join(argv))


def test_finished_run_is_not_trained_again(tiny_model, toy_pairs, tmp_path):
    out = tmp_path / "sft"
    args = sft_args(tiny_model, toy_pairs, out, steps=2)
    align(*args)
    first = record(out)
    assert first["status"] == "succeeded" and first["adapter"] == "checkpoint-2"
    again = align(*args)
    assert "already finished" in again.stderr and record(out) == first
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    fresh = align(*args, "--no-resume", check=False)
    assert fresh.returncode == 2 and "holds checkpoints of an earlier run" in fresh.stderr


def test_bad_set_values_are_usage_errors(tiny_model, toy_pairs, tmp_path):
    yaml_error = align(*sft_args(tiny_model, toy_pairs, tmp_path / "a"), "--set", "foo=[a", check=False)
    assert yaml_error.returncode == 2 and "not valid YAML" in yaml_error.stderr and "Traceback" not in yaml_error.stderr
    refused = align(*sft_args(tiny_model, toy_pairs, tmp_path / "b"), "--set", "lora_rank=abc", check=False)
    assert refused.returncode == 2 and "ms-swift refused an argument" in refused.stderr
    assert json.loads((tmp_path / "b" / "gwq_run.json").read_text())["status"] == "failed"


def test_from_sft_on_another_base_is_refused(tiny_model, toy_pairs, tmp_path):
    from gwq_align.tiny import build_tiny_model

    sft = tmp_path / "sft"
    align(*sft_args(tiny_model, toy_pairs, sft, steps=1))
    other = build_tiny_model(tmp_path / "other", seed=1)
    dpo = align("dpo", "--model", other, "--dataset", toy_pairs, "--output-dir", tmp_path / "dpo", "--from-sft", sft,
                "--recipe", "cpu-tiny", check=False)
    assert dpo.returncode == 2 and "was trained on" in dpo.stderr


def test_resuming_with_other_data_or_settings_is_refused(tiny_model, toy_pairs, tmp_path):
    out = tmp_path / "sft"
    align(*sft_args(tiny_model, toy_pairs, out, steps=3))
    other = tmp_path / "other.jsonl"
    other.write_text(toy_pairs.read_text(encoding="utf-8").replace("推荐一本书", "推荐两本书"), encoding="utf-8")
    data = align(*sft_args(tiny_model, other, out, steps=6), check=False)
    assert data.returncode == 2 and "on other data" in data.stderr and "new --output-dir" in data.stderr
    lr = align(*sft_args(tiny_model, toy_pairs, out, steps=6), "--lr", "1e-3", check=False)
    assert lr.returncode == 2 and "learning_rate: 0.002 -> 0.001" in lr.stderr
    # The same file under another name is the same data; a longer run is still a continuation.
    same = tmp_path / "copy.jsonl"
    same.write_bytes(toy_pairs.read_bytes())
    align(*sft_args(tiny_model, same, out, steps=4), "--save-steps", 4)
    rec = record(out)
    assert rec["status"] == "succeeded" and rec["resumed_from"].endswith("checkpoint-3")


def test_killed_run_is_noted_and_resumed_and_a_live_one_is_not_joined(tiny_model, toy_pairs, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from test_align_train import start_until_first_checkpoint

    out = tmp_path / "sft"
    proc = start_until_first_checkpoint(sft_args(tiny_model, toy_pairs, out, steps=9), out,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.killpg(proc.pid, signal.SIGKILL)  # no handler runs: the record stays at "running"
    proc.wait()
    assert record(out)["status"] == "running"

    # A live gwq process named in the record: refuse to train into the same directory.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "gwq-align"])
    try:
        rec = record(out)
        (out / "gwq_run.json").write_text(json.dumps(dict(rec, pid=sleeper.pid)))
        busy = align(*sft_args(tiny_model, toy_pairs, out, steps=9), check=False)
        assert busy.returncode == 2 and f"pid {sleeper.pid}" in busy.stderr
        (out / "gwq_run.json").write_text(json.dumps(rec))
    finally:
        sleeper.kill()
        sleeper.wait()

    align(*sft_args(tiny_model, toy_pairs, out, steps=9))
    rec = record(out)
    assert rec["status"] == "succeeded" and rec["adapter"] == "checkpoint-9"
    assert "ended without finishing" in rec["previous_session"] and rec["resumed_from"]


def test_checkpoint_layers_reach_the_model_and_bad_values_are_refused(tiny_model, toy_pairs, tmp_path):
    """gwq_checkpoint_layers is gwq's: ms-swift never sees it, gwq's entry applies it, bad values are one line."""
    out = tmp_path / "partial"
    align(*sft_args(tiny_model, toy_pairs, out, steps=2), "--set", "gradient_checkpointing=true",
          "--set", "gwq_checkpoint_layers=1")
    rec = record(out)
    assert rec["status"] == "succeeded" and rec["args"]["gwq_checkpoint_layers"] == 1
    assert "gwq_checkpoint_layers" not in rec["swift_command"]  # ms-swift's parser would refuse it
    assert "[gwq] gradient checkpointing on 1 of 2 decoder layers" in (out / "train.log").read_text()
    off = align(*sft_args(tiny_model, toy_pairs, tmp_path / "off"), "--set", "gwq_checkpoint_layers=1", check=False)
    assert off.returncode == 2 and "needs gradient_checkpointing true" in off.stderr
    bad = align(*sft_args(tiny_model, toy_pairs, tmp_path / "bad"), "--set", "gradient_checkpointing=true",
                "--set", "gwq_checkpoint_layers=-1", check=False)
    assert bad.returncode == 2 and "whole number of decoder layers" in bad.stderr and "Traceback" not in bad.stderr
