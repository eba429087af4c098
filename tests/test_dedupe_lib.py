"""gwq_data.dedupe against datasketch itself and against exact Jaccard on planted duplicates."""

import random

import numpy as np
import pytest
from datasketch import MinHash

from gwq_data.dedupe import (DedupeConfig, dedupe_records, dedupe_texts, normalize, record_text,
                             shingle_hash, shingles, signatures)
from gwq_data.errors import UsageError
from gwq_data.synthetic import corpus, dialogue, evaluate, near_variant


@pytest.mark.parametrize("num_perm,ngram,seed", [(128, 5, 1), (64, 3, 42), (256, 1, 7)])
def test_signatures_equal_datasketch(num_perm, ngram, seed):
    rng = random.Random(seed)
    texts = [normalize("".join(dialogue(rng, rng.randint(20, 300)))) for _ in range(30)]
    texts += ["", "短", "ab", "abcdefg", "好" * 50]  # empty, shorter than n, repeats
    ours = signatures(texts, num_perm, ngram, seed)
    for text, sig in zip(texts, ours):
        m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
        m.update_batch(shingles(text, ngram))
        assert np.array_equal(m.hashvalues, sig), text


def test_shingle_hash_accepts_bytes_like_datasketch_callers():
    assert shingle_hash("我听说方圆") == shingle_hash("我听说方圆".encode("utf-8"))
    assert shingle_hash("我听说方圆") != shingle_hash("我听说方园")


@pytest.mark.parametrize("a,b", [
    ("我听说 方圆十里", "我听说方圆十里"),                      # spaces
    ("嗟乎！难道不是吗？", "嗟乎，难道不是吗。"),                # punctuation, full-width
    ("我聽說方圓十里的人沒有不知道的", "我听说方圆十里的人没有不知道的"),  # 繁體 vs 简体
    ("Hello\tWORLD\n", "hello world"),                         # case, control characters
    ("ＡＢＣ１２３", "abc123"),                                  # full-width letters and digits
])
def test_normalize_equal_forms(a, b):
    assert normalize(a) == normalize(b)


def test_normalize_keeps_meaningful_differences():
    assert normalize("我听说方圆十里") != normalize("我听说方圆百里")
    assert normalize("我聽說，Hello  World！") == "我听说helloworld"


def test_exact_duplicates_cluster_to_the_first():
    texts = ["我听说方圆十里", "别的话", "我聽說，方圓十里！", " 我听说 方圆十里 ", "别的话。"]
    result = dedupe_texts(texts, DedupeConfig(workers=1))
    assert result.keep == [0, 1]
    assert [(c.kept, c.dropped, c.kind, c.jaccard) for c in result.clusters] == [
        (0, [2, 3], "exact", [1.0, 1.0]), (1, [4], "exact", [1.0])]


def test_near_duplicate_and_its_exact_copy_join_the_kept_ones_cluster():
    rng = random.Random(1)
    base = "".join(dialogue(rng, 400))
    near = near_variant(rng, base, 0.005)
    texts = [base, "".join(dialogue(rng, 400)), near, near + "！"]
    result = dedupe_texts(texts, DedupeConfig(workers=1))
    assert result.keep == [0, 1]
    (cluster,) = result.clusters
    assert (cluster.kept, cluster.dropped, cluster.kind) == (0, [2, 3], "near")
    assert cluster.jaccard[0] == cluster.jaccard[1] >= 0.85


def test_empty_and_punctuation_only_texts_are_only_exact_duplicates():
    result = dedupe_texts(["", "！！", "。", "有字"], DedupeConfig(workers=1))
    assert result.keep == [0, 3]
    assert [(c.kept, c.dropped, c.kind) for c in result.clusters] == [(0, [1, 2], "exact")]
    assert dedupe_texts([], DedupeConfig()).keep == []


def test_planted_near_duplicates_recall_and_precision():
    c = corpus(3000, seed=11, exact_rate=0.02, near_rate=0.10, edits=(0.0, 0.05))
    texts = c.texts
    cfg = DedupeConfig(workers=1)
    result = dedupe_texts(texts, cfg)
    scores = evaluate(texts, c.planted, result, cfg.threshold, cfg.ngram)
    print(f"\nplanted near-duplicates at threshold {cfg.threshold}: {scores}")
    assert scores["true_duplicates"] > 100
    assert scores["recall"] >= 0.93
    assert scores["precision"] >= 0.93
    # Every planted exact variant is found, and as exact.
    exact = {d for cl in result.clusters if cl.kind == "exact" for d in cl.dropped}
    assert {copy for _, copy, kind, _ in c.planted if kind == "exact"} <= exact


def test_stricter_threshold_drops_fewer():
    texts = corpus(800, seed=5, edits=(0.0, 0.05)).texts
    loose = dedupe_texts(texts, DedupeConfig(threshold=0.7, workers=1))
    strict = dedupe_texts(texts, DedupeConfig(threshold=0.95, workers=1))
    assert loose.dropped["near"] > strict.dropped["near"] > 0
    assert all(j >= 0.95 for cl in strict.clusters for j in cl.jaccard)


def test_worker_processes_give_the_same_result():
    texts = corpus(600, seed=2).texts
    one = dedupe_texts(texts, DedupeConfig(workers=1))
    done = []
    two = dedupe_texts(texts, DedupeConfig(workers=2, batch_size=100), progress=done.append)
    assert one == two
    assert sum(done) == len(texts)


def test_records_compare_on_user_and_assistant_turns():
    rec = {"messages": [{"role": "system", "content": "你是古人。"}, {"role": "user", "content": "你好"},
                        {"role": "assistant", "content": "嗟乎！", "original": "你好！"}]}
    assert record_text(rec) == "你好\n嗟乎！"
    other = {"messages": [{"role": "system", "content": "另一个系统提示"}, *rec["messages"][1:]]}
    assert dedupe_records([rec, other], DedupeConfig(workers=1)).keep == [0]


@pytest.mark.parametrize("kwargs", [{"threshold": 0}, {"threshold": 1.5}, {"num_perm": 1}, {"ngram": 0}, {"workers": -1}])
def test_config_rejects_bad_values_with_a_fix(kwargs):
    with pytest.raises(UsageError, match="must be"):
        DedupeConfig(**kwargs)


def test_config_name_says_what_made_it():
    assert str(DedupeConfig()) == "dedupe_t0.85_p128_n5_s1"
    assert str(DedupeConfig(threshold=0.9, num_perm=64, ngram=3)) == "dedupe_t0.9_p64_n3_s1"


def test_batch_normalisation_matches_per_text_and_handles_odd_characters():
    from gwq_data.dedupe import _hash_batch

    texts = ["Straße ﬁne", "STRASSE fine", "bad \ud800 surrogate", "bad surrogate", "㈠ 第一", "一第一", "", "，。"]
    assert normalize(texts[0]) == normalize(texts[1]) == "strassefine"
    assert normalize(texts[2]) == normalize(texts[3])
    assert normalize(texts[4]) == normalize(texts[5])
    digests, sigs, empty = _hash_batch((texts, 128, 5, 1))
    assert digests[0] == digests[1] and digests[2] == digests[3] and digests[4] == digests[5] and digests[6] == digests[7]
    assert empty.tolist() == [False] * 6 + [True, True]
    assert np.array_equal(sigs, signatures([normalize(t) for t in texts]))


def test_prefiltered_lsh_matches_a_plain_datasketch_lsh_loop():
    """The band pre-filter and skipped queries/inserts change nothing: same clusters as
    querying and inserting every text into datasketch's MinHashLSH."""
    from datasketch import LeanMinHash, MinHashLSH

    from gwq_data.dedupe import _lsh_params

    texts = corpus(1500, seed=4, exact_rate=0.0, near_rate=0.2, edits=(0.003, 0.04)).texts  # no exact copies
    cfg = DedupeConfig(workers=1)
    sigs = signatures([normalize(t) for t in texts])
    lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm,
                     params=_lsh_params(cfg.threshold, cfg.num_perm, cfg.miss_weight))
    keep, near = [], {}
    for i, sig in enumerate(sigs):
        sketch = LeanMinHash(seed=cfg.seed, hashvalues=sig, scheme="affine32")
        scored = sorted((-sketch.jaccard(LeanMinHash(seed=1, hashvalues=sigs[k], scheme="affine32")), k)
                        for k in lsh.query(sketch))
        if scored and -scored[0][0] >= cfg.threshold:
            near.setdefault(scored[0][1], []).append((i, -scored[0][0]))
        else:
            keep.append(i)
            lsh.insert(i, sketch)
    result = dedupe_texts(texts, cfg)
    assert result.keep == keep
    assert {c.kept: list(zip(c.dropped, c.jaccard)) for c in result.clusters} == near
    assert len(near) > 50
