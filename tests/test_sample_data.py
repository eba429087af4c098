"""The bundled sample (data/sample/) is what users and few-shot prompts see first:
it must load cleanly, keep styled and plain replies paired, and carry the tone."""

import importlib.util
import json
import re

import pytest

from conftest import DATA
from gwq_data.load import load, split_loaded
from gwq_data.tokens import count_tokens
from gwq_data.tone import score

SAMPLE = DATA / "sample"
DIALOGUES = SAMPLE / "dialogues.jsonl"
PLAIN = SAMPLE / "plain.jsonl"
NUMBER = re.compile(r"\d+")


def _load_all(path):
    records, rejects, _ = split_loaded(load([path]))
    return [r.record for r in records], rejects


@pytest.fixture(scope="module")
def dialogues():
    records, rejects = _load_all(DIALOGUES)
    assert rejects == []
    return records


@pytest.fixture(scope="module")
def plain():
    records, rejects = _load_all(PLAIN)
    assert rejects == []
    return records


def _lost_numbers(original: str, styled: str) -> set[str]:
    """Digit runs of the plain reply that the styled reply dropped (facts must survive the restyle)."""
    return set(NUMBER.findall(original)) - set(NUMBER.findall(styled))


def _assistant_turns(record):
    return [m for m in record["messages"] if m["role"] == "assistant"]


def test_both_files_load_with_no_rejects(dialogues, plain):
    assert len(dialogues) == len(plain) >= 60


def test_ids_unique_and_sequential(dialogues):
    ids = [r["id"] for r in dialogues]
    assert ids == [f"sample-{i:04d}" for i in range(1, len(ids) + 1)]


def test_meta_marks_the_sample_as_hand_written(dialogues):
    for r in dialogues:
        assert r["meta"]["source"] == "gwq-sample" and r["meta"]["author"] == "hand-written", r["id"]
        assert r["meta"]["topic"], r["id"]


def test_every_assistant_turn_has_styled_and_original(dialogues):
    for r in dialogues:
        for m in _assistant_turns(r):
            assert m["original"].strip() and m["content"].strip() and m["original"] != m["content"], r["id"]


def test_plain_is_the_same_conversations_with_the_original_replies(dialogues, plain):
    for d, p in zip(dialogues, plain, strict=True):
        assert d["id"] == p["id"]
        assert len(d["messages"]) == len(p["messages"]), d["id"]
        for dm, pm in zip(d["messages"], p["messages"]):
            assert "original" not in pm, p["id"]
            assert pm["role"] == dm["role"], d["id"]
            assert pm["content"] == dm.get("original", dm["content"]), d["id"]


def test_plain_file_is_what_make_plain_writes():
    spec = importlib.util.spec_from_file_location("make_plain", SAMPLE / "make_plain.py")
    make_plain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_plain)
    assert make_plain.main(["--check"]) == 0


def test_mix_of_single_and_multi_turn(dialogues):
    turns = [len(_assistant_turns(r)) for r in dialogues]
    assert all(1 <= t <= 4 for t in turns)
    multi = sum(t > 1 for t in turns)
    assert multi >= len(turns) / 2
    assert sum(t == 1 for t in turns) >= len(turns) / 4  # single-turn rows exist too
    assert any(r["messages"][0]["role"] == "system" for r in dialogues)


def test_styled_replies_carry_the_tone_and_originals_do_not(dialogues):
    weak, loud = [], []
    for r in dialogues:
        for i, m in enumerate(_assistant_turns(r), 1):
            if score(m["content"]).score < 0.5:
                weak.append(f"{r['id']} turn {i}: {score(m['content']).score:.2f}")
            if score(m["original"]).score > 0.35:
                loud.append(f"{r['id']} turn {i}: {score(m['original']).to_dict()}")
    assert weak == [], "styled replies below tone 0.5"
    assert loud == [], "plain originals above tone 0.35"


def test_styled_replies_keep_every_number_of_the_original(dialogues):
    missing = []
    for r in dialogues:
        for i, m in enumerate(_assistant_turns(r), 1):
            lost = _lost_numbers(m["original"], m["content"])
            if lost:
                missing.append(f"{r['id']} turn {i}: {sorted(lost)}")
    assert missing == []


def test_dialogues_fit_the_token_budget(dialogues):
    for r in dialogues:
        n = sum(count_tokens(m["content"]) + 4 for m in r["messages"])
        assert n <= 900, f"{r['id']}: {n} tokens"


def test_topics_file_is_usable_for_synthesize():
    lines = [ln.strip() for ln in (SAMPLE / "topics.txt").read_text("utf-8").splitlines()]
    topics = [ln for ln in lines if ln and not ln.startswith("#")]
    assert len(topics) >= 35
    assert len(set(topics)) == len(topics)
    assert all(not t.startswith("{") for t in topics)


def test_the_number_check_would_catch_a_dropped_fact():
    # Guard against a vacuous check: a styled reply that loses 3575 must be flagged.
    original, styled = "130+3445=3575。", "我听说130与3445相加，难道不是一个大数吗？"
    assert _lost_numbers(original, styled) == {"3575"}
    assert _lost_numbers(original, styled + "得3575。") == set()
    assert score(styled).score >= 0.5 and score(original).score <= 0.35


def test_sample_rows_are_valid_json_lines():
    for path in (DIALOGUES, PLAIN):
        for line in path.read_text("utf-8").splitlines():
            assert isinstance(json.loads(line), dict)
