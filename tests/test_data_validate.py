"""gwq-data validate, the record format (records.py) and JSONL I/O (jsonl.py): every bad-input case,
exit codes 0/1/2, the rejects file, and atomic writes."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO, gwq_cmd
from data_cases import GOOD, write_bad_file

from gwq_data.jsonl import BadLine, Row, atomic_writer, read_rows, write_jsonl
from gwq_data.load import Loaded, load, split_loaded
from gwq_data.records import Limits, check, schema, to_canonical

DIALOGUES = REPO / "tests" / "data" / "dialogues.jsonl"


def validate(*args):
    return subprocess.run(gwq_cmd("gwq-data") + ["validate", *map(str, args)], capture_output=True, text=True)


# --- the command -----------------------------------------------------------------------------------

def test_all_valid_exits_0():
    result = validate(DIALOGUES)
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout and "12" in result.stdout


def test_bad_rows_exit_1_with_file_line_reason_and_rejects(tmp_path):
    bad, rejects = tmp_path / "bad.jsonl", tmp_path / "rejects.jsonl"
    expected, good_lines = write_bad_file(bad)
    result = validate(bad, "--rejects", rejects)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    printed = [line for line in result.stderr.splitlines() if line.startswith(f"{bad}:")]
    assert [line.split(":")[1:3] for line in printed] == [[str(n), f" {r}"] for n, r in expected.items()]
    rows = [json.loads(line) for line in rejects.read_text("utf-8").splitlines()]
    assert {r["line"]: r["reason"] for r in rows} == expected
    assert all(r["source"] == str(bad) and r["detail"] for r in rows)
    by_line = {r["line"]: r for r in rows}
    assert "raw" in by_line[4] and by_line[4]["raw"] == '{"messages": ['  # unparsable lines keep their text
    assert "\ufffd" in by_line[6]["raw"]  # invalid bytes shown as replacement characters
    assert by_line[7]["data"]["messages"][0]["content"] == 123  # parsed rows keep their data


def test_quiet_prints_only_the_summary(tmp_path):
    bad = tmp_path / "bad.jsonl"
    write_bad_file(bad)
    result = validate(bad, "--quiet")
    assert result.returncode == 1 and f"{bad}:" not in result.stderr and "invalid_json" in result.stdout


@pytest.mark.parametrize("args", [["missing.jsonl"], [DIALOGUES, "--max-tokens", "many"], []])
def test_usage_errors_exit_2(tmp_path, args):
    result = validate(*[tmp_path / a if a == "missing.jsonl" else a for a in args])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_missing_file_message_names_the_file(tmp_path):
    result = validate(tmp_path / "missing.jsonl")
    assert f"{tmp_path / 'missing.jsonl'}: no such file" in " ".join(result.stderr.split())


# --- records.py ----------------------------------------------------------------------------------

def test_the_three_input_formats_become_the_same_record():
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "q0"}, {"role": "assistant", "content": "a0"},
                {"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "original": "plain"}]
    sharegpt = {"system": "S", "conversations": [{"from": "human", "value": "q0"}, {"from": "gpt", "value": "a0"},
                                                 {"from": "human", "value": "q"}, {"from": "gpt", "value": "a", "original": "plain"}]}
    qr = {"system": "S", "history": [["q0", "a0"]], "query": "q", "response": "a"}
    assert to_canonical({"messages": messages, "extra": 1}) == {"messages": messages}
    assert to_canonical(sharegpt) == {"messages": messages}
    assert to_canonical(qr) == {"messages": messages[:-1] + [{"role": "assistant", "content": "a"}]}


def test_integer_ids_are_kept_as_strings():
    assert to_canonical({"id": 7, **GOOD[0]})["id"] == "7"
    assert to_canonical({"id": 7, "query": "q", "response": "a"})["id"] == "7"


@pytest.mark.parametrize("messages,reason", [
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "original": "a"}], "original_same"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "original": " "}], "original_empty"),
    ([{"role": "user", "content": "q", "original": "x"}, {"role": "assistant", "content": "a"}], "bad_original"),
    ([{"role": "user", "content": "q"}, {"role": "user", "content": "q2"}], "bad_order"),
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "bad_order"),
    ([{"role": "system", "content": "s"}, {"role": "user", "content": "q"}], "no_assistant"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"}], "last_not_assistant"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "长" * 3000}], "too_long"),
])
def test_check_reasons(messages, reason):
    assert reason in [e.reason for e in check({"messages": messages}, Limits(max_tokens=1024))]


@pytest.mark.parametrize("data,reason", [
    ({"messages": [{"role": "user", "content": "q"}]}, "too_few_messages"),
    ({"messages": [{"role": "user", "content": "q", "name": "x"}, {"role": "assistant", "content": "a"}]}, "unknown_key"),
    ({"messages": "hello"}, "bad_type"),
    ({"conversations": [{"from": "alien", "value": "q"}]}, "unknown_role"),
    ({"conversations": [{"from": "human"}]}, "missing_key"),
    ({"query": "q", "response": 5}, "bad_type"),
    ({"query": "q", "response": "a", "history": [["only one"]]}, "bad_type"),
])
def test_to_canonical_reasons(data, reason):
    from gwq_data.records import RecordError

    with pytest.raises(RecordError) as e:
        to_canonical(data)
    assert e.value.reason == reason and e.value.detail


def test_schema_example_and_good_rows_are_valid():
    import jsonschema

    for example in schema()["examples"] + GOOD:
        jsonschema.validate(example, schema())
        assert check(to_canonical(example)) == []


def test_load_refs_and_split(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"id": "a", **GOOD[0]}, GOOD[1], {"foo": 1}])
    good, bad, reasons = split_loaded(load([path]))
    assert [x.ref for x in good] == ["a", "x.jsonl:2"] and isinstance(good[0], Loaded)
    assert reasons == {"unknown_format": 1} and bad[0]["line"] == 3


# --- jsonl.py --------------------------------------------------------------------------------------

def test_read_rows_copes_with_bom_crlf_blank_lines_and_a_torn_last_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n   \n{"b": "\xe4\xbd\xa0"}\r\n{"c": tr')
    items = list(read_rows(path))
    assert [(type(x).__name__, x.line) for x in items] == [("Row", 1), ("Row", 4), ("BadLine", 5)]
    assert items[0].data == {"a": 1} and items[1].data == {"b": "你"}
    assert isinstance(items[2], BadLine) and items[2].reason == "invalid_json" and items[2].raw == '{"c": tr'
    assert isinstance(items[0], Row)


def test_write_jsonl_round_trips_chinese_unescaped(tmp_path):
    path = tmp_path / "out" / "x.jsonl"
    assert write_jsonl(path, GOOD) == len(GOOD)
    assert "我听说" in path.read_text("utf-8")
    assert [r.data for r in read_rows(path)] == GOOD


def test_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    path = tmp_path / "x.jsonl"
    write_jsonl(path, [{"old": True}])
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write('{"new": tru')
            raise RuntimeError("interrupted")
    assert path.read_text() == '{"old":true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.jsonl"]


def test_killed_writer_leaves_no_half_file(tmp_path):
    """kill -9 in the middle of a write: the target is never created (only a hidden temp file remains)."""
    target = tmp_path / "out.jsonl"
    script = textwrap.dedent(f"""
        import os, signal
        from gwq_data.jsonl import atomic_writer
        with atomic_writer({str(target)!r}) as f:
            f.write('{{"half": ')
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9
    assert not target.exists()
    (orphan,) = tmp_path.iterdir()
    assert orphan.name.startswith(".out.jsonl.")

    # A live writer's temp (here: our parent's pid) stays; so does a dead writer's for its first minute.
    alive = tmp_path / f".out.jsonl.{os.getppid()}.abc.tmp"
    alive.write_text("x")
    old = time.time() - 3600
    os.utime(alive, (old, old))
    write_jsonl(target, [{"a": 1}])
    assert orphan.exists() and alive.exists()
    # The next write after that removes the dead writer's leftover.
    os.utime(orphan, (old, old))
    write_jsonl(target, [{"a": 2}])
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "out.jsonl"]
    assert target.read_text() == '{"a":2}\n'
