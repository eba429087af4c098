"""gwq-data dedupe as a user runs it: golden cluster report, rejects, usage errors."""

import json
import subprocess
from pathlib import Path

from conftest import gwq_cmd
from typer.testing import CliRunner

from gwq_data.cli import app

CASES = Path(__file__).parent / "data" / "dedupe"


def _jsonl(path: Path) -> list:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_help():
    result = CliRunner().invoke(app, ["dedupe", "--help"])
    assert result.exit_code == 0
    assert "--threshold" in result.output and "Example:" in result.output


def test_golden_cluster_report(tmp_path):
    # a2 is a1 in 繁體 with other spacing and punctuation, a3 is a1 under another
    # system prompt; line 4 (query/response, no id) and b2 edit two words of b1.
    out = tmp_path / "kept.jsonl"
    proc = subprocess.run([*gwq_cmd("gwq-data"), "dedupe", str(CASES / "input.jsonl"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "kept.clusters.jsonl").read_text("utf-8") == (CASES / "expected.clusters.jsonl").read_text("utf-8")
    assert [r["id"] for r in _jsonl(out)] == ["a1", "b1", "c1"]
    rejects = _jsonl(tmp_path / "kept.rejects.jsonl")
    assert [(r["line"], r["reason"]) for r in rejects if not r["reason"].startswith("duplicate_")] == [
        (5, "invalid_json"), (9, "too_few_messages")]
    # Nothing is lost: kept + dropped + rejected = input rows, and every dropped row is in the rejects file.
    clusters = _jsonl(tmp_path / "kept.clusters.jsonl")
    dupes = [r for r in rejects if r["reason"].startswith("duplicate_")]
    assert 3 + sum(len(c["dropped"]) for c in clusters) + 2 == 9
    assert len(dupes) == sum(len(c["dropped"]) for c in clusters)
    assert all(r["data"]["messages"] and r["kept"] for r in dupes)
    assert [r["line"] for r in rejects] == sorted(r["line"] for r in rejects)
    assert "near duplicates dropped" in proc.stdout


def test_explicit_report_and_rejects_paths(tmp_path):
    args = ["dedupe", str(CASES / "input.jsonl"), "--out", str(tmp_path / "o.jsonl"), "--report",
            str(tmp_path / "r" / "c.jsonl"), "--rejects", str(tmp_path / "bad.jsonl"), "--workers", "1",
            "--threshold", "0.95"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    clusters = _jsonl(tmp_path / "r" / "c.jsonl")
    # At 0.95 the two-word edit (estimated Jaccard 0.88) is no longer a duplicate of
    # b1, and b2 (the edit plus "！") becomes an exact duplicate of the edit.
    assert [(c["kept"], c["dropped"], c["kind"]) for c in clusters] == [
        ("a1", ["a2", "a3"], "exact"), ("input.jsonl:4", ["b2"], "exact")]
    assert [r.get("id") for r in _jsonl(tmp_path / "o.jsonl")] == ["a1", "b1", None, "c1"]
    assert [r["reason"] for r in _jsonl(tmp_path / "bad.jsonl")].count("duplicate_exact") == 3
    assert len(_jsonl(tmp_path / "bad.jsonl")) == 2 + 3


def test_bad_threshold_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["dedupe", str(CASES / "input.jsonl"), "--out", str(tmp_path / "o.jsonl"),
                                      "--threshold", "1.5"])
    assert result.exit_code == 2
    assert "--threshold 1.5: must be in (0, 1]" in " ".join(result.output.split())  # rich may wrap
    assert not (tmp_path / "o.jsonl").exists()


def test_missing_input_is_one_line(tmp_path):
    result = CliRunner().invoke(app, ["dedupe", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 2
    assert "no such file" in " ".join(result.output.split()) and "Traceback" not in result.output


def test_same_file_name_in_two_folders_gives_unambiguous_refs(tmp_path):
    """Reports name a row by file:line; two inputs called input.jsonl are named by their paths instead."""
    a, b = tmp_path / "a" / "input.jsonl", tmp_path / "b" / "input.jsonl"
    for path in (a, b):
        path.parent.mkdir()
        path.write_text("".join(line for line in (CASES / "input.jsonl").read_text("utf-8").splitlines(True)
                                if '"id"' not in line), "utf-8")  # keep only the rows that have no id
    result = CliRunner().invoke(app, ["dedupe", str(a), str(b), "--out", str(tmp_path / "o.jsonl"), "--workers", "1"])
    assert result.exit_code == 0, result.output
    clusters = _jsonl(tmp_path / "o.clusters.jsonl")
    refs = [c["kept"] for c in clusters] + [d for c in clusters for d in c["dropped"]]
    assert refs and all(r.startswith((str(a) + ":", str(b) + ":")) for r in refs)
    assert any(r.startswith(str(b)) for r in refs)  # b's copy of a's row is a duplicate named by b's path
