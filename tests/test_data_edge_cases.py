"""Inputs and paths that used to slip through: each must give a reason or one line, never a traceback or a lost file."""

import json

from typer.testing import CliRunner

from gwq_data.cli import app
from gwq_data.jsonl import BadLine, read_rows
from gwq_data.records import to_canonical

ROW = {"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "我听说你好，难道不是吗？", "original": "你好！"}]}


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert not (result.exception and not isinstance(result.exception, SystemExit)), result.exception
    return result


def test_lone_surrogate_is_a_reason_and_other_rows_survive(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROW, ensure_ascii=False) + "\n" + '{"query": "\\ud800", "response": "x"}\n'
                   + '{"query": "\\ud83d\\ude00", "response": "ok"}\n', "utf-8")
    items = list(read_rows(src))
    assert [type(i).__name__ for i in items] == ["Row", "BadLine", "Row"]
    assert isinstance(items[1], BadLine) and items[1].reason == "invalid_unicode"
    result = run("convert", src, "--to", "swift-sft", "--out", tmp_path / "out.jsonl")
    assert result.exit_code == 0 and len((tmp_path / "out.jsonl").read_text("utf-8").splitlines()) == 2


def test_deep_nesting_is_invalid_json(tmp_path):
    src = tmp_path / "deep.jsonl"
    src.write_text("[" * 100_000 + "]" * 100_000 + "\n", "utf-8")
    assert [i.reason for i in read_rows(src)] == ["invalid_json"]


def test_output_path_that_is_a_directory_is_one_line(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROW, ensure_ascii=False) + "\n", "utf-8")
    (tmp_path / "adir").mkdir()
    result = run("convert", src, "--to", "swift-sft", "--out", tmp_path / "adir")
    assert result.exit_code == 1 and "adir" in result.output and "Traceback" not in result.output


def test_outputs_never_overwrite_inputs(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROW, ensure_ascii=False) + "\n", "utf-8")
    before = src.read_bytes()
    for args in (["validate", src, "--rejects", src], ["convert", src, "--to", "swift-sft", "--out", src],
                 ["dedupe", src, "--out", src], ["generate", "--input", src, "--out", src, "--model", "m", "--dry-run"]):
        result = run(*args)
        assert result.exit_code == 2 and "is also an input" in " ".join(result.output.split()), args
    assert src.read_bytes() == before


def test_a_pasted_key_in_api_key_env_is_refused_and_never_echoed(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(ROW, ensure_ascii=False) + "\n", "utf-8")
    secret = "sk-proj-THISISASECRETKEY1234567890"
    result = run("generate", "--input", src, "--out", tmp_path / "o.jsonl", "--model", "m",
                 "--base-url", "https://api.example.com/v1", "--api-key-env", secret)
    assert result.exit_code == 2 and secret not in result.output and "NAME of an environment variable" in result.output


def test_synthesize_counts_must_be_positive_and_topics_must_be_utf8(tmp_path):
    topics = tmp_path / "topics.txt"
    topics.write_bytes("读书\n".encode() + b"\xff\xfe\n")
    common = ["generate", "--mode", "synthesize", "--topics", topics, "--out", tmp_path / "o.jsonl", "--model", "m", "--dry-run"]
    assert run(*common, "--turns", "0").exit_code == 2
    bad = run(*common)
    assert bad.exit_code == 2 and "topics.txt:2: not UTF-8" in " ".join(bad.output.split())


def test_blank_or_null_system_is_no_system():
    for row in ({"system": "", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
                {"system": None, "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]},
                {"messages": [{"role": "system", "content": " "}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}):
        assert [m["role"] for m in to_canonical(row)["messages"]] == ["user", "assistant"]


def test_dataset_info_that_is_not_an_object_fails_before_anything_is_written(tmp_path):
    src, info, out = tmp_path / "in.jsonl", tmp_path / "dataset_info.json", tmp_path / "out.jsonl"
    src.write_text(json.dumps(ROW, ensure_ascii=False) + "\n", "utf-8")
    info.write_text("[1, 2]", "utf-8")
    result = run("convert", src, "--to", "swift-sft", "--out", out, "--dataset-info", info)
    assert result.exit_code == 2 and not out.exists()


def test_prepare_with_nothing_kept_fails(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text('{"query": "q"}\n', "utf-8")
    assert run("prepare", src, "--out-dir", tmp_path / "p").exit_code == 1


def test_swift_dpo_rows_keep_their_pair_when_fed_back(tmp_path):
    src, dpo = tmp_path / "in.jsonl", tmp_path / "dpo.jsonl"
    src.write_text(json.dumps(ROW, ensure_ascii=False) + "\n", "utf-8")
    assert run("convert", src, "--to", "swift-dpo", "--out", dpo).exit_code == 0
    again = tmp_path / "again.jsonl"
    assert run("convert", dpo, "--to", "swift-dpo", "--out", again).exit_code == 0
    assert again.read_text("utf-8") == dpo.read_text("utf-8")


def test_numbers_keep_leading_decimals_and_read_fullwidth_digits():
    from gwq_data.fidelity import numbers

    assert numbers("3.14是圆周率") == ["3.14"]
    assert numbers("1. 先洗菜\n2. 再切菜") == []
    assert numbers("共３５７５元") == ["3575"]
