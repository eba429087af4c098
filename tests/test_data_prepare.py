"""gwq-data prepare: golden outputs, deterministic leak-free split, duplicates and bad lines kept in rejects."""

import json
import re

import pytest
from conftest import REPO
from data_cases import assert_golden, write_bad_file
from typer.testing import CliRunner

from gwq_data import __version__
from gwq_data.cli import app
from gwq_data.prepare import assign_val, split_value

DIALOGUES = "tests/data/dialogues.jsonl"
OUTPUTS = ["sft/train.jsonl", "sft/val.jsonl", "dpo/train.jsonl", "dpo/val.jsonl", "llamafactory/dpo_train.jsonl",
           "llamafactory/dpo_val.jsonl", "rejects.jsonl", "dataset_info.json"]
runner = CliRunner()


def prepare(*args):
    result = runner.invoke(app, ["prepare", *map(str, args)])
    assert "Traceback" not in result.output
    return result


def rows(path):
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


@pytest.fixture
def prepared(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # relative input path, so stats.json/report.md are the same everywhere
    out = tmp_path / "prepared"
    result = prepare(DIALOGUES, "--out-dir", out, "--val-ratio", "0.2", "--pairs", "all")
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("name", OUTPUTS)
def test_outputs_match_golden(prepared, name):
    assert_golden((prepared / name).read_text("utf-8"), f"prepare/{name}")


def test_stats_and_report_match_golden(prepared):
    stats = json.loads((prepared / "stats.json").read_text("utf-8"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", stats.pop("created_at"))
    assert stats.pop("gwq_version") == __version__
    assert_golden(json.dumps(stats, ensure_ascii=False, indent=2) + "\n", "prepare/stats.json")
    report = (prepared / "report.md").read_text("utf-8")
    report = report.replace(f"gwq {__version__}, ", "gwq <version>, ")
    assert_golden(re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", "<created_at>", report), "prepare/report.md")


def test_counts_add_up_and_duplicates_go_to_rejects(prepared):
    stats = json.loads((prepared / "stats.json").read_text("utf-8"))
    c = stats["counts"]
    assert (c["input_rows"], c["valid"], c["rejected"]) == (12, 12, 0)
    assert (c["duplicates_exact"], c["duplicates_near"], c["kept"]) == (1, 1, 10)
    assert c["sft_train"] + c["sft_val"] == c["kept"]
    assert sum(stats["tone"]["histogram"].values()) == sum(stats["tokens"]["histogram"].values()) == c["kept"]
    rejects = {r["line"]: r for r in rows(prepared / "rejects.jsonl")}
    assert rejects[8]["reason"] == "duplicate_exact" and rejects[8]["kept"] == "d02"
    assert rejects[10]["reason"] == "duplicate_near" and rejects[10]["kept"] == "d09"
    assert rejects[10]["data"]["id"] == "d10"  # the dropped record itself is kept in the rejects file


def test_no_dialogue_leaks_between_train_and_val(prepared):
    sft = {split: [r["messages"] for r in rows(prepared / f"sft/{split}.jsonl")] for split in ("train", "val")}
    assert sft["train"] and sft["val"]
    for split, other in (("train", "val"), ("val", "train")):
        for row in rows(prepared / f"dpo/{split}.jsonl"):
            chosen = row["messages"]
            assert any(d[:len(chosen)] == chosen for d in sft[split])
            assert not any(d[:len(chosen)] == chosen for d in sft[other])


def test_split_is_stable_when_rows_are_added():
    records = [{"messages": [{"role": "user", "content": f"问题{i}"}, {"role": "assistant", "content": f"答{i}"}]}
               for i in range(400)]
    first = assign_val(records[:200], 0.1, seed=42)
    grown = assign_val(records, 0.1, seed=42)
    assert grown[:200] == first  # adding rows moves none of the old ones
    assert 0.05 < sum(grown) / len(grown) < 0.15
    assert assign_val(records, 0.1, seed=7) != grown  # the seed matters
    assert split_value(records[0], 42) == split_value(json.loads(json.dumps(records[0])), 42)


def test_val_is_never_empty_when_asked_for():
    records = [{"messages": [{"role": "user", "content": str(i)}, {"role": "assistant", "content": "x"}]} for i in range(3)]
    assert sum(assign_val(records, 0.001, seed=42)) == 1
    assert sum(assign_val(records, 0.0, seed=42)) == 0
    # Only records 1 and 2 make DPO pairs: one of them must be in val too, whatever the hashes say.
    is_val = assign_val(records, 0.001, seed=42, has_pair=[False, True, True])
    assert is_val[1] != is_val[2] and sum(is_val) in (1, 2)


def test_bad_input_lines_land_in_rejects(tmp_path):
    bad = tmp_path / "bad.jsonl"
    expected, good_lines = write_bad_file(bad)
    out = tmp_path / "out"
    result = prepare(bad, "--out-dir", out)
    assert result.exit_code == 0, result.output
    c = json.loads((out / "stats.json").read_text())["counts"]
    assert (c["input_rows"], c["valid"], c["rejected"], c["kept"]) == (len(expected) + len(good_lines), 4, 10, 4)
    assert {r["line"]: r["reason"] for r in rows(out / "rejects.jsonl")} == expected
    assert len(rows(out / "sft/train.jsonl")) + len(rows(out / "sft/val.jsonl")) == 4


def test_rerun_gives_identical_files(prepared, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    again = tmp_path / "again"
    assert prepare(DIALOGUES, "--out-dir", again, "--val-ratio", "0.2", "--pairs", "all").exit_code == 0
    for name in OUTPUTS + ["report.md"]:
        strip = lambda s: re.sub(r"\d{4}-\d\d-\d\dT[\d:]+\+00:00", "", s)  # noqa: E731
        assert strip((again / name).read_text("utf-8")) == strip((prepared / name).read_text("utf-8")), name


@pytest.mark.parametrize("args,message", [(["--val-ratio", "1.5"], "--val-ratio"), (["--pairs", "every"], "--pairs")])
def test_usage_errors(tmp_path, args, message):
    result = prepare(REPO / DIALOGUES, "--out-dir", tmp_path / "o", *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "o").exists()


def test_sample_dataset_end_to_end(tmp_path):
    sample = REPO / "data" / "sample" / "dialogues.jsonl"
    lines = [line for line in sample.read_text("utf-8").splitlines() if line.strip()]
    out = tmp_path / "sample"
    result = prepare(sample, "--out-dir", out)
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    c = stats["counts"]
    assert c["input_rows"] == len(lines) and c["rejected"] == 0, stats["rejects_by_reason"]
    assert c["kept"] == c["valid"] - c["duplicates_exact"] - c["duplicates_near"]
    assert c["sft_train"] + c["sft_val"] == c["kept"] and c["sft_val"] >= 1 and c["dpo_val"] >= 1
    assert c["dpo_train"] + c["dpo_val"] + c["dpo_skipped_no_original"] == c["kept"]  # --pairs last: one pair each
    assert all(r["rejected_response"] for r in rows(out / "dpo/train.jsonl"))
    assert stats["tone"]["mean"] > 0.3  # the sample is written in the tone
    assert "## Tone score" in (out / "report.md").read_text("utf-8")
