"""gwq-data generate against `swift deploy` serving a tiny random Qwen2 on CPU: a real
OpenAI-compatible server we did not write. Its replies are noise, so every row must be
rejected with a reason, and the exit status and summary must say so."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import OFFLINE
from typer.testing import CliRunner

from gwq_data.cli import app
from gwq_data.generate.prompt import load_prompt

KNOWN_REASONS = {"bad_json", "reply_count", "truncated", "empty_reply", "unchanged", "echo_prompt", "too_short", "too_long",
                 "lost_numbers", "lost_entities", "drift", "low_tone"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def swift_server(tiny_model, tmp_path):
    port, log = free_port(), tmp_path / "swift.log"
    cmd = [str(Path(sys.executable).parent / "swift"), "deploy", "--model", str(tiny_model), "--model_type", "qwen2",
           "--template", "qwen2_5", "--infer_backend", "transformers", "--served_model_name", "gwq-tiny",
           "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as f:
        # Its own session: `swift deploy` runs the server in a child process, and teardown must end both.
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ | OFFLINE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    if "gwq-tiny" in r.read().decode():
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"swift deploy did not come up:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.slow
def test_swift_deploy_gibberish_is_rejected_with_reasons(tmp_path, swift_server):
    # A one-example copy of the prompt keeps CPU prefill short; the contract and wording are the real ones.
    data = yaml.safe_load(load_prompt("translation_tone").path.read_text("utf-8"))
    data["examples"] = data["examples"][:1]
    prompt = tmp_path / "short.yaml"
    prompt.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"query": "130+3445等于多少？", "response": "130+3445等于3575。"},
        {"query": "推荐一本入门Python的书。", "response": "可以看《Python编程：从入门到实践》。"},
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["generate", "--input", str(src), "--out", str(out), "--model", "gwq-tiny",
                                      "--base-url", swift_server, "--prompt", str(prompt), "--max-tokens", "8",
                                      "--max-attempts", "1", "--concurrency", "2", "--timeout", "120"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 1, result.stderr
    assert not out.exists() or out.read_text("utf-8") == ""
    rejects = [json.loads(line) for line in (tmp_path / "out.rejects.jsonl").read_text("utf-8").splitlines()]
    assert sorted(r["line"] for r in rejects) == [1, 2]
    assert all(r["reason"] in KNOWN_REASONS and r["detail"] for r in rejects)
    assert "2 of 2 rows rejected" in " ".join(result.stderr.split())
    assert "rejected" in result.stdout and "requests sent" in result.stdout
    assert "Traceback" not in result.stderr
