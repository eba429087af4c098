"""bench/dedupe.py runs end to end on a small corpus and writes its JSON."""

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "dedupe.py"


def test_bench_small_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_dedupe", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "dedupe.json"
    bench.main(["--n", "1500", "--baseline-n", "150", "--workers", "2", "--out", str(out)])
    data = json.loads(out.read_text("utf-8"))
    assert [r["method"] for r in data["rows"]] == ["gwq dedupe_texts", "gwq dedupe_texts", "datasketch per-doc loop",
                                                   "gwq dedupe_texts", "datasketch update_batch"]
    gwq, one, plain, subset, batch = data["rows"]
    assert subset["docs"] == plain["docs"]
    assert plain["scores"] == batch["scores"]
    assert gwq["docs"] == one["docs"] == 1500 and plain["docs"] == 150
    # Same clusters whatever the worker count; both methods find the planted duplicates.
    assert gwq["scores"] == one["scores"]
    assert gwq["recall"] >= 0.9 and gwq["precision"] >= 0.9 and plain["recall"] >= 0.8
    assert "docs/s" in capsys.readouterr().out
