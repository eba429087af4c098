"""gwq-data convert: every output format against golden files, DPO pairing rules, bad input, LLaMA-Factory entries."""

import json
import os
import re
import subprocess

import pytest
from conftest import REPO, gwq_cmd
from data_cases import assert_golden, write_bad_file
from typer.testing import CliRunner

from gwq_data.cli import app
from gwq_data.convert import FORMATS, dataset_info_entry, dpo_pairs, to_rows

DIALOGUES = REPO / "tests" / "data" / "dialogues.jsonl"
runner = CliRunner()


def convert(*args):
    return runner.invoke(app, ["convert", *map(str, args)])


@pytest.mark.parametrize("command", ["validate", "convert", "prepare", "stats"])
def test_help(command):
    env = {**os.environ, "COLUMNS": "200"}  # keep the Example line on one line whatever the terminal
    out = subprocess.run(gwq_cmd("gwq-data") + [command, "--help"], capture_output=True, text=True, check=True, env=env).stdout
    assert "Example: gwq-data " + command in " ".join(out.split())


@pytest.mark.parametrize("fmt,pairs", [(f, "last") for f in FORMATS] + [("swift-dpo", "all"), ("trl-dpo", "all")])
def test_convert_matches_golden(tmp_path, fmt, pairs):
    out = tmp_path / "out.jsonl"
    result = convert(DIALOGUES, "--to", fmt, "--out", out, "--pairs", pairs)
    assert result.exit_code == 0, result.output
    assert_golden(out.read_text("utf-8"), f"convert/{fmt}-{pairs}.jsonl")


def test_sft_rows_are_plain(tmp_path):
    out = tmp_path / "sft.jsonl"
    assert convert(DIALOGUES, "--to", "swift-sft", "--out", out).exit_code == 0
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 12
    assert all(set(r) == {"messages"} and all(set(m) == {"role", "content"} for m in r["messages"]) for r in rows)


def test_dpo_pairs_last_and_all():
    record = {"messages": [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "styled1", "original": "plain1"},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "styled2", "original": "plain2"},
        {"role": "user", "content": "q3"}, {"role": "assistant", "content": "styled3"},
    ]}
    assert dpo_pairs(record, "last") == []  # the last turn has no original
    pairs = dpo_pairs(record, "all")
    assert [(p.chosen, p.rejected) for p in pairs] == [("styled1", "plain1"), ("styled2", "plain2")]
    # History keeps the styled replies, never the originals.
    assert [m["content"] for m in pairs[1].history] == ["S", "q1", "styled1", "q2"]
    row = to_rows(record, "swift-dpo", "all")[1]
    assert row == {"messages": pairs[1].history + [{"role": "assistant", "content": "styled2"}], "rejected_response": "plain2"}
    trl = to_rows(record, "trl-dpo", "all")[0]
    assert trl["prompt"][-1] == {"role": "user", "content": "q1"}
    assert trl["chosen"] == [{"role": "assistant", "content": "styled1"}]
    assert trl["rejected"] == [{"role": "assistant", "content": "plain1"}]


def test_dpo_without_original_is_counted_not_rejected(tmp_path):
    out, rejects = tmp_path / "dpo.jsonl", tmp_path / "rejects.jsonl"
    result = convert(DIALOGUES, "--to", "swift-dpo", "--out", out, "--rejects", rejects)
    assert result.exit_code == 0
    assert re.search(r"dpo_skipped_no_original\s*│\s*2\s*│", result.output), result.output
    assert rejects.read_text() == ""
    rows = [json.loads(line) for line in out.read_text("utf-8").splitlines()]
    assert len(rows) == 10 and all(r["rejected_response"] and r["messages"][-1]["role"] == "assistant" for r in rows)


def test_bad_input_keeps_every_good_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    expected, good_lines = write_bad_file(bad)
    out, rejects = tmp_path / "out.jsonl", tmp_path / "rejects.jsonl"
    result = convert(bad, "--to", "sharegpt", "--out", out, "--rejects", rejects)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert len(out.read_text("utf-8").splitlines()) == len(good_lines)
    got = {r["line"]: r["reason"] for r in map(json.loads, rejects.read_text("utf-8").splitlines())}
    assert got == expected
    for line, reason in expected.items():
        assert f"{bad}:{line}: {reason}:" in result.output


def test_dataset_info_entries_merge(tmp_path):
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"someone_else": {"file_name": "x.json"}}))
    assert convert(DIALOGUES, "--to", "swift-sft", "--out", tmp_path / "data" / "sft.jsonl", "--dataset-info", info).exit_code == 0
    assert convert(DIALOGUES, "--to", "llamafactory-dpo", "--out", tmp_path / "data" / "dpo.jsonl",
                   "--dataset-info", info, "--name", "gwq_dpo").exit_code == 0
    entries = json.loads(info.read_text())
    assert entries["someone_else"] == {"file_name": "x.json"}
    assert entries["sft"] == dataset_info_entry("swift-sft", "data/sft.jsonl")
    assert entries["gwq_dpo"]["ranking"] is True and entries["gwq_dpo"]["file_name"] == "data/dpo.jsonl"


def test_llamafactory_dpo_rows_fit_its_ranking_reader(tmp_path):
    """LLaMA-Factory's sharegpt ranking converter wants an odd number of turns ending at the user
    (after an optional system) and chosen/rejected as single message objects."""
    out = tmp_path / "lf.jsonl"
    assert convert(DIALOGUES, "--to", "llamafactory-dpo", "--out", out, "--pairs", "all").exit_code == 0
    for row in map(json.loads, out.read_text("utf-8").splitlines()):
        turns = [m for m in row["messages"] if m["role"] != "system"]
        assert len(turns) % 2 == 1 and turns[-1]["role"] == "user"
        assert row["chosen"]["role"] == row["rejected"]["role"] == "assistant"


@pytest.mark.parametrize("args,message", [
    (["--to", "alpaca"], "is not a format"),
    (["--to", "swift-dpo", "--pairs", "some"], "choose 'last' or 'all'"),
    (["--to", "trl-dpo", "--dataset-info", "info.json"], "use --to llamafactory-dpo"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    result = convert(DIALOGUES, "--out", tmp_path / "o.jsonl", *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split())
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_input_is_a_usage_error(tmp_path):
    result = convert(tmp_path / "nope.jsonl", "--to", "swift-sft", "--out", tmp_path / "o.jsonl")
    assert result.exit_code == 2 and "no such file" in result.output
