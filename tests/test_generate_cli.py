"""gwq-data generate end to end: the real CLI and the real openai client against a real HTTP server
on 127.0.0.1 (tests/llm_server.py) that injects 429s, 500s, hangs, cut-off and non-JSON bodies."""

import json
import re
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from types import SimpleNamespace

import pytest
from conftest import gwq_cmd
from llm_server import FakeLLM
from typer.testing import CliRunner

from gwq_data.cli import app

from gwq_data.generate.prompt import load_prompt

SECRET = "sk-test-SECRET-0123456789"


@pytest.fixture
def server():
    srv = FakeLLM()
    srv.start()
    yield srv
    srv.stop()


def generate(*args, env=None):
    """Run the command in-process (the openai SDK takes seconds to import; pay that once)."""
    result = CliRunner().invoke(app, ["generate", *map(str, args)], env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr)


def write_rows(path, markers):
    """One row per marker, in the three input formats by turn; "" is a plain row, None a broken line."""
    lines = []
    for i, mark in enumerate(markers, 1):
        if mark is None:
            lines.append('{"query": "坏行')
            continue
        q, a = f"第{i}个问题{mark}", f"第{i}个回答：每天练习{i * 10}分钟，坚持下去。"
        lines.append(json.dumps([
            {"query": q, "response": a},
            {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]},
            {"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a},
                               {"from": "human", "value": "还有呢？"}, {"from": "gpt", "value": f"再练{i}周。"}]},
        ][i % 3], ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read(path):
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()] if path.exists() else []


def cell(table: str, label: str) -> str:
    """The value beside `label` in a printed summary table."""
    return re.search(rf"{re.escape(label)}\s*│\s*([^│]*?)\s*│", table).group(1)


def line_of(key: str) -> int:
    return int(key.rsplit(":", 1)[1].split("#")[0])


def stable(rows):
    """Rows without their wall-clock timestamps, for comparing two runs."""
    def strip(r):
        if "meta" in r:
            r = r | {"meta": {k: v for k, v in r["meta"].items() if k != "created_at"}}
        if isinstance(r.get("data"), dict) and "record" in r["data"]:
            r = r | {"data": r["data"] | {"record": strip(r["data"]["record"])}}
        return r
    return [strip(r) for r in rows]


def test_help():
    result = subprocess.run(gwq_cmd("gwq-data") + ["generate", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--max-cost" in result.stdout and "Example:" in result.stdout


def test_faults_retries_every_row_exactly_once_and_the_key_never_leaks(tmp_path, server):
    server.api_key = SECRET
    markers = ["", "<<429>>", "<<500>>", "<<hang>>", "<<truncated>>", "<<nonjson>>", "<<badjson>>", "<<wrongcount>>",
               "", "<<badjson-always>>", "<<plain>>", "<<dropnum>>", None, ""]
    src, out = write_rows(tmp_path / "in.jsonl", markers), tmp_path / "out.jsonl"
    result = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url,
                      "--timeout", "1", "--retries", "2", "--concurrency", "4", env={"OPENAI_API_KEY": SECRET})
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    styled, rejects = read(out), read(tmp_path / "out.rejects.jsonl")
    keys = [line_of(r["meta"]["source"]) for r in styled] + [r["line"] for r in rejects]
    assert sorted(keys) == list(range(1, len(markers) + 1)) and len(set(keys)) == len(keys)   # each row exactly once
    assert {r["line"]: r["reason"] for r in rejects} == {10: "bad_json", 11: "low_tone", 12: "lost_numbers", 13: "invalid_json"}
    assert [line_of(r["meta"]["source"]) for r in styled] == sorted(line_of(r["meta"]["source"]) for r in styled)
    assert all(r["detail"] for r in rejects) and "reply 1 low_tone" in rejects[1]["detail"]

    # Retries happened: the SDK re-sent the 429/500/hang/cut-off bodies; bad answers were re-asked.
    sent = Counter(server.bodies())
    faulty = {h for r in server.requests for h in [r["hash"]] if r["body"] and any(
        m in json.dumps(r["body"]["messages"][-1], ensure_ascii=False) for m in ("<<429>>", "<<500>>", "<<hang>>", "<<truncated>>"))}
    assert len(faulty) == 4 and all(sent[h] >= 2 for h in faulty)
    reasks = [r for r in server.requests if r["body"] and "你上一次的输出无法使用" in r["body"]["messages"][-1]["content"]]
    assert len(reasks) == 1 + 2 + 1   # badjson once, badjson-always twice (3 attempts), wrongcount once
    assert "<<429>>" in json.dumps(styled, ensure_ascii=False)  # 429 row made it through

    # The styled records keep each plain reply and carry the shared meta contract.
    p = load_prompt("translation_tone")
    for r in styled:
        assistant = [m for m in r["messages"] if m["role"] == "assistant"]
        assert all(m["original"] and m["content"].startswith("我听说") and m["original"] in m["content"] for m in assistant)
        meta = r["meta"]
        assert set(meta) == {"source", "input_sha", "generator", "prompt", "prompt_hash", "params", "usage", "created_at"}
        assert (meta["generator"], meta["prompt"], meta["prompt_hash"]) == ("fake-model", "translation_tone", p.hash)
        assert meta["params"] == {"temperature": 0.7, "seed": None} and meta["usage"]["prompt_tokens"] > 0
        assert meta["created_at"].endswith("Z")
    assert cell(result.stdout, "rejected") == "4" and cell(result.stdout, "low_tone") == "1"
    assert cell(result.stdout, "HTTP errors retried") == "2" and cell(result.stdout, "re-asks after bad answers") == "4"

    # The key appears nowhere: outputs, cache, terminal, or what the server recorded.
    cache_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("out.cache.sqlite*"))
    for blob in (out.read_bytes(), (tmp_path / "out.rejects.jsonl").read_bytes(), cache_bytes,
                 result.stdout.encode(), result.stderr.encode(), json.dumps(server.requests).encode()):
        assert SECRET.encode() not in blob
    assert all("authorization" not in {k.lower() for k in r["headers"]} for r in server.requests)


def test_rerun_after_finish_sends_nothing_and_changes_nothing(tmp_path, server):
    src, out = write_rows(tmp_path / "in.jsonl", ["", "", "<<plain>>", ""]), tmp_path / "out.jsonl"
    first = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url)
    assert first.returncode == 1
    before, sent = (out.read_bytes(), (tmp_path / "out.rejects.jsonl").read_bytes()), len(server.bodies())
    again = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url)
    assert again.returncode == 1 and len(server.bodies()) == sent
    assert (out.read_bytes(), (tmp_path / "out.rejects.jsonl").read_bytes()) == before
    assert cell(again.stdout, "already done (resumed)") == "4" and cell(again.stdout, "requests sent") == "0"
    dry = generate("--input", src, "--out", out, "--model", "fake-model", "--dry-run")
    assert dry.returncode == 0 and "nothing to send" in dry.stderr
    # The cache alone also prevents re-sending: delete the outputs, keep the cache.
    out.unlink()
    (tmp_path / "out.rejects.jsonl").unlink()
    third = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url)
    assert len(server.bodies()) == sent and third.returncode == 1
    assert out.read_bytes() == before[0]
    with sqlite3.connect(tmp_path / "out.cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 4
    # Resuming into OUT with an edited prompt keeps the old rows but says so.
    edited = tmp_path / "edited.yaml"
    edited.write_bytes(load_prompt("translation_tone").path.read_bytes() + b"\n# edited\n")
    fourth = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url, "--prompt", edited)
    assert "already holds 3 rows made by another model or prompt" in " ".join(fourth.stderr.split())
    assert len(server.bodies()) == sent


def test_sigkill_mid_run_then_restart_equals_an_uninterrupted_run(tmp_path, server):
    server.latency = 0.08
    src = write_rows(tmp_path / "in.jsonl", [""] * 30 + ["<<dropnum>>"] * 2)
    args = ["--input", src, "--model", "fake-model", "--base-url", server.base_url, "--concurrency", "3"]
    ref = generate(*args, "--out", tmp_path / "ref" / "out.jsonl")
    assert ref.returncode == 1, ref.stderr  # two rows rejected
    n_ref = len(server.bodies())

    out = tmp_path / "killed" / "out.jsonl"
    proc = subprocess.Popen(gwq_cmd("gwq-data") + ["generate", *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while (not out.exists() or len(out.read_bytes().splitlines()) < 8) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(out.read_bytes().splitlines())
    assert 8 <= done_before < 30
    with open(out, "ab") as f:
        f.write('{"messages": [{"role": "user", "content": "半行'.encode())  # what a kill mid-write would leave
    sent_before = len(server.bodies())

    again = subprocess.run(gwq_cmd("gwq-data") + ["generate", *map(str, args), "--out", str(out)],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 1, again.stderr
    assert stable(read(out)) == stable(read(tmp_path / "ref" / "out.jsonl"))
    assert stable(read(tmp_path / "killed" / "out.rejects.jsonl")) == stable(read(tmp_path / "ref" / "out.rejects.jsonl"))
    # Only requests that were in flight at the kill (at most --concurrency 3) may be sent twice.
    bodies = server.bodies()
    ref_bodies, killed_and_resumed = bodies[:n_ref], bodies[n_ref:]
    assert set(killed_and_resumed) == set(ref_bodies)
    assert len(ref_bodies) <= len(killed_and_resumed) <= len(ref_bodies) + 3
    assert len(bodies) - sent_before < len(ref_bodies) - done_before + 3 + 1


def test_max_requests_and_max_cost_stop_cleanly_and_resume_without_paying_twice(tmp_path, server):
    src, out = write_rows(tmp_path / "in.jsonl", [""] * 6), tmp_path / "out.jsonl"
    base = ["--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url, "--concurrency", "1"]
    stopped = generate(*base, "--max-requests", "2")
    assert stopped.returncode == 1 and "reached --max-requests 2" in stopped.stderr
    assert "run the same command again" in stopped.stderr.lower().replace("\n", " ")
    assert len(read(out)) == 2 and len(server.bodies()) == 2
    cost = generate(*base, "--max-cost", "0.001", "--price-in", "1", "--price-out", "2")
    assert cost.returncode == 1 and "reached --max-cost" in cost.stderr and "cost" in cost.stdout
    assert len(read(out)) == 3 and len(server.bodies()) == 3   # the first request overshoots; then it stops
    done = generate(*base)
    assert done.returncode == 0, done.stderr
    assert len(read(out)) == 6 and len(server.bodies()) == 6   # every row paid for once


@pytest.mark.parametrize("case", ["refused", "unknown_model", "bad_key", "not_openai", "missing_v1"])
def test_server_problems_give_one_readable_line(tmp_path, server, case):
    src, out = write_rows(tmp_path / "in.jsonl", ["", ""]), tmp_path / "out.jsonl"
    url, model, env = server.base_url, "fake-model", {}
    if case == "refused":
        url = "http://127.0.0.1:9/v1"
    elif case == "unknown_model":
        model = "gpt-9"
    elif case == "bad_key":
        server.api_key, env = SECRET, {"MY_KEY": "sk-wrong-key-abcdef"}
    elif case == "missing_v1":
        url = url.removesuffix("/v1")
    else:
        server.not_openai = True
    result = generate("--input", src, "--out", out, "--model", model, "--base-url", url, "--api-key-env", "MY_KEY",
                      "--retries", "0", env=env)
    expected = {"refused": "cannot reach http://127.0.0.1:9/v1", "unknown_model": "unknown model 'gpt-9'",
                "bad_key": "refused the API key from $MY_KEY (401", "not_openai": "OpenAI-compatible",
                "missing_v1": "/chat/completions not found (404): is --base-url an OpenAI-compatible endpoint ending in /v1?"}[case]
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr and "sk-wrong-key" not in result.stderr + result.stdout
    assert read(out) == []


@pytest.mark.parametrize("args,message", [
    ([], "rewrite mode needs --input"),
    (["--mode", "synthesize"], "synthesize mode needs --topics"),
    (["--mode", "poetry"], "choose rewrite or synthesize"),
    (["--max-cost", "5"], "--max-cost needs --price-in"),
    (["--prompt", "synthesize"], "use it with --mode synthesize"),
    (["--prompt", "nope"], "no prompt of that name"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    result = generate("--out", tmp_path / "o.jsonl", "--model", "m", *args)
    assert result.returncode == 2 and message in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


def test_dry_run_prints_the_prompt_and_estimate_and_sends_nothing(tmp_path, server):
    src = write_rows(tmp_path / "in.jsonl", ["", "", None])
    result = generate("--input", src, "--out", tmp_path / "o.jsonl", "--model", "fake-model", "--base-url", server.base_url,
                      "--dry-run", "--price-in", "0.5", "--price-out", "1.5")
    assert result.returncode == 0, result.stderr
    assert "--- system ---" in result.stdout and "第1个问题" in result.stdout and "我听说算术之道" in result.stdout
    assert "prompt tokens (est.)" in result.stdout and "cost (est." in result.stdout and "qwen2" in result.stdout
    assert server.requests == [] and not (tmp_path / "o.jsonl").exists()


def test_synthesize_mode_writes_new_dialogues_with_originals(tmp_path, server):
    topics = tmp_path / "topics.txt"
    topics.write_text("# topics\n学习书法\n\n健身入门\n", encoding="utf-8")
    out = tmp_path / "syn.jsonl"
    result = generate("--mode", "synthesize", "--topics", topics, "--num", "5", "--turns", "2", "--out", out,
                      "--model", "fake-model", "--base-url", server.base_url, "--rpm", "6000", "--seed", "7")
    assert result.returncode == 0, result.stderr
    rows = read(out)
    assert [r["meta"]["source"] for r in rows] == [f"{topics}:{line}#{i}" for line, i in
                                                   [(2, 1), (4, 1), (2, 2), (4, 2), (2, 3)]]
    for r in rows:
        assert [m["role"] for m in r["messages"]] == ["user", "assistant"] * 2
        assert all(m["original"] in m["content"] for m in r["messages"] if m["role"] == "assistant")
        assert r["meta"]["prompt"] == "synthesize" and r["meta"]["params"] == {"temperature": 0.7, "seed": 7}
    assert "学习书法" in rows[0]["messages"][0]["content"] and len({r["id"] for r in rows}) == 5


def test_servers_without_json_mode_still_work(tmp_path, server):
    server.json_mode = False
    src, out = write_rows(tmp_path / "in.jsonl", ["", ""]), tmp_path / "out.jsonl"
    result = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url, "--concurrency", "1")
    assert result.returncode == 0, result.stderr
    chat = [r["body"] for r in server.requests if r["path"].endswith("/chat/completions")]
    assert "response_format" in chat[0] and all("response_format" not in b for b in chat[1:])
    assert len(read(out)) == 2


def test_rows_rejected_for_server_errors_can_be_retried(tmp_path, server):
    server.fail_times = 100  # this row's request always gets a 500
    src, out = write_rows(tmp_path / "in.jsonl", ["", "<<500>>"]), tmp_path / "out.jsonl"
    base = ["--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url, "--retries", "0"]
    first = generate(*base, "--max-attempts", "2", "--tpm", "100000")
    assert first.returncode == 1
    assert [(r["line"], r["reason"]) for r in read(tmp_path / "out.rejects.jsonl")] == [(2, "api_error")]
    assert cell(first.stdout, "HTTP errors retried") == "2"  # two attempts, each one 500
    server.fail_times = 0
    again = generate(*base, "--retry-reasons", "api_error")
    assert again.returncode == 0, again.stderr
    assert read(tmp_path / "out.rejects.jsonl") == [] and [line_of(r["meta"]["source"]) for r in read(out)] == [1, 2]
    assert "earlier rejects retried" in again.stdout


def test_ctrl_c_stops_with_a_resume_hint_and_the_rerun_finishes(tmp_path, server):
    server.latency = 0.1
    src, out = write_rows(tmp_path / "in.jsonl", [""] * 40), tmp_path / "out.jsonl"
    cmd = gwq_cmd("gwq-data") + ["generate", "--input", str(src), "--out", str(out), "--model", "fake-model",
                                 "--base-url", server.base_url, "--concurrency", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (not out.exists() or len(read(out)) < 4) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in " ".join(err.split())
    assert "Traceback" not in err and 4 <= len(read(out)) < 40
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and len(read(out)) == 40
    assert len(set(server.bodies())) == 40 and len(server.bodies()) <= 40 + 2


def test_input_meta_is_kept_under_the_contract_and_limit_counts_rows(tmp_path, server):
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"问{i}"}, {"role": "assistant", "content": f"答案是{i}。"}],
             "meta": {"topic": "算术", "source": "hand-written"}} for i in range(5)]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    result = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url, "--limit", "3")
    assert result.returncode == 0, result.stderr
    styled = read(out)
    assert [r["id"] for r in styled] == ["r0", "r1", "r2"] and len(server.bodies()) == 3
    assert all(r["meta"]["topic"] == "算术" and r["meta"]["source"] == f"{src}:{i + 1}" for i, r in enumerate(styled))


def test_synthesize_rejects_carry_topic_and_index_and_resume_by_them(tmp_path, server):
    topics = tmp_path / "topics.jsonl"
    topics.write_text('{"topic": "学习书法"}\n{"topic": "坏话题<<badjson-always>>"}\n', encoding="utf-8")
    out = tmp_path / "syn.jsonl"
    args = ["--mode", "synthesize", "--topics", topics, "--num", "4", "--out", out, "--model", "fake-model",
            "--base-url", server.base_url, "--max-attempts", "2"]
    first = generate(*args)
    assert first.returncode == 1
    rejects = read(tmp_path / "syn.rejects.jsonl")
    assert [(r["line"], r["data"]["index"], r["reason"]) for r in rejects] == [(2, 1, "bad_json"), (2, 2, "bad_json")]
    assert all(r["data"]["topic"] == "坏话题<<badjson-always>>" and "answer" in r["data"] for r in rejects)
    assert [r["meta"]["source"].rsplit(":", 1)[1] for r in read(out)] == ["1#1", "1#2"]
    sent = len(server.bodies())
    again = generate(*args)
    assert again.returncode == 1 and len(server.bodies()) == sent and cell(again.stdout, "already done (resumed)") == "4"


def test_resume_matches_rows_by_content_and_refuses_an_edited_input(tmp_path, server):
    src, out = write_rows(tmp_path / "in.jsonl", ["", "", ""]), tmp_path / "out.jsonl"
    assert generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url).returncode == 0
    sent, before = len(server.bodies()), out.read_bytes()
    # The same file under another path: nothing is redone or duplicated.
    same = generate("--input", src.resolve(), "--out", out, "--model", "fake-model", "--base-url", server.base_url,
                    "--cache", tmp_path / "other.sqlite")
    assert same.returncode == 0 and len(server.bodies()) == sent and out.read_bytes() == before
    # A row inserted at the top moves every line: refuse rather than skip the new row and repeat the last one.
    lines = src.read_text("utf-8").splitlines()
    src.write_text("\n".join([json.dumps({"query": "新问题", "response": "新回答：先读书。"}, ensure_ascii=False)] + lines) + "\n", "utf-8")
    edited = generate("--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url)
    assert edited.returncode == 2 and "the input changed" in " ".join(edited.stderr.split())
    assert out.read_bytes() == before and len(server.bodies()) == sent


def test_retry_reasons_ask_again_instead_of_replaying_the_rejected_answer(tmp_path, server):
    src, out = write_rows(tmp_path / "in.jsonl", ["", "<<plain>>"]), tmp_path / "out.jsonl"
    base = ["--input", src, "--out", out, "--model", "fake-model", "--base-url", server.base_url]
    assert generate(*base).returncode == 1
    reason = read(tmp_path / "out.rejects.jsonl")[0]["reason"]
    sent = len(server.bodies())
    again = generate(*base, "--retry-reasons", reason)
    assert len(server.bodies()) == sent + 1  # the rejected row was asked again, not replayed from the cache
    assert again.returncode == 1 and [r["reason"] for r in read(tmp_path / "out.rejects.jsonl")] == [reason]
    assert generate(*base).returncode == 1 and len(server.bodies()) == sent + 1  # and a plain rerun sends nothing
