"""gwq-data stats and the stats module behind prepare's stats.json/report.md."""

import json

from conftest import REPO
from data_cases import write_bad_file
from typer.testing import CliRunner

from gwq_data.cli import app
from gwq_data.stats import describe, markdown, token_bin, tone_bin

DIALOGUES = REPO / "tests" / "data" / "dialogues.jsonl"
runner = CliRunner()


def test_stats_command_prints_and_writes_json(tmp_path):
    out = tmp_path / "stats.json"
    result = runner.invoke(app, ["stats", str(DIALOGUES), "--json", str(out)])
    assert result.exit_code == 0, result.output
    stats = json.loads(out.read_text("utf-8"))
    assert (stats["rows"], stats["valid"], stats["invalid"], stats["with_original"]) == (12, 12, 0, 10)
    assert stats["turns"]["histogram"] == {"1": 9, "2": 3}
    assert stats["generators"] == {"(none)": 10, "qwen2.5-72b-instruct": 2}
    assert stats["prompts"]["tone_v1@a1b2c3d4e5f6"] == 2
    for section in ("tokens", "tone"):
        assert sum(stats[section]["histogram"].values()) == 12
    assert stats["tokens"]["max"] >= stats["tokens"]["p90"] >= stats["tokens"]["p50"] > 0
    assert 0.5 < stats["tone"]["p50"] <= stats["tone"]["p90"] <= 1
    assert "mean assistant turns" in result.output and "0.9-1.0" in result.output


def test_stats_counts_invalid_rows_by_reason(tmp_path):
    bad = tmp_path / "bad.jsonl"
    expected, good = write_bad_file(bad)
    out = tmp_path / "s.json"
    assert runner.invoke(app, ["stats", str(bad), "--json", str(out)]).exit_code == 0
    stats = json.loads(out.read_text())
    assert stats["valid"] == len(good) and stats["invalid"] == len(expected)
    assert sum(stats["invalid_by_reason"].values()) == len(expected)


def test_bins():
    assert [token_bin(n) for n in (0, 127, 128, 1023, 2048, 10**6)] == ["0-128", "0-128", "128-256", "512-1024", "2048+", "2048+"]
    assert [tone_bin(s) for s in (0.0, 0.05, 0.1, 0.99, 1.0)] == ["0.0-0.1", "0.0-0.1", "0.1-0.2", "0.9-1.0", "0.9-1.0"]


def test_describe_plain_vs_styled_and_empty():
    plain = {"messages": [{"role": "user", "content": "几点了？"}, {"role": "assistant", "content": "三点。"}]}
    styled = {"messages": [{"role": "user", "content": "几点了？"},
                           {"role": "assistant", "content": "嗟乎！我听说方圆十里没有不知道时辰的，难道阁下不知吗？"}]}
    s = describe([plain, styled], count_tokens=len)
    assert s["tokens"]["method"] == "custom" and s["tokens"]["max"] == len("几点了？") + len(styled["messages"][1]["content"])
    assert s["tone"]["histogram"]["0.0-0.1"] == 1 and s["tone"]["histogram"]["0.9-1.0"] == 1
    empty = describe([])
    assert empty["records"] == 0 and empty["tone"]["mean"] == 0 and sum(empty["tokens"]["histogram"].values()) == 0
    assert "## Tone score" in markdown(s) and "| 0.9-1.0 | 1 |" in markdown(s)
