"""generate's building blocks: fidelity, answer parsing, the quality gate, prompts, the cache."""

import random

import pytest

from gwq_data.errors import UsageError
from gwq_data.fidelity import chinese_numeral, entities, fidelity, lcs_len, numbers, rouge_l
from gwq_data.generate.answer import AnswerError, parse_replies, parse_turns
from gwq_data.generate.cache import Cache, Completion
from gwq_data.generate.gate import Gate, GateConfig
from gwq_data.generate.prompt import load_prompt


def lcs_reference(a: str, b: str) -> int:
    """The textbook O(n·m) dynamic programme the bit-parallel version must agree with."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def test_lcs_matches_reference_dp():
    rng = random.Random(0)
    for _ in range(400):
        a = "".join(rng.choice("我听说难道吗ab") for _ in range(rng.randint(0, 40)))
        b = "".join(rng.choice("我听说难道吗ab") for _ in range(rng.randint(0, 40)))
        assert lcs_len(a, b) == lcs_reference(a, b), (a, b)


def test_rouge_l_bounds():
    assert rouge_l("abc", "abc") == (1.0, 1.0, 1.0)
    assert rouge_l("abc", "") == (0.0, 0.0, 0.0)
    p, r, f = rouge_l("130+3445等于3575。", "我听说130加3445等于3575")
    assert r > 0.8 and p < r


@pytest.mark.parametrize("text,value", [("三千五百七十五", 3575), ("十二", 12), ("二〇二四", 2024), ("一万零五", 10005),
                                        ("两百", 200), ("一亿两千万", 120_000_000), ("三十五万六千", 356_000)])
def test_chinese_numerals(text, value):
    assert chinese_numeral(text) == value


def test_numbers_and_entities():
    assert numbers("1. 先做\n2、再做 3,575 元，增长 3.5%") == ["3575", "3.5"]
    assert entities("用 Python 和 GPT-4 读《论语》，输入 `ls -a`") == ["Python", "GPT-4", "ls", "论语", "ls -a"]


def test_fidelity_keeps_the_issue_example():
    ok = fidelity("130+3445等于3575。", "我听说130与3445相加，难道不是3575吗？")
    assert ok.missing_numbers == []
    assert fidelity("130+3445等于3575。", "130与3445相加，难道不是三千五百七十五吗？").missing_numbers == []
    lost = fidelity("130+3445等于3575。", "嗟乎！此数之大，方圆十里无人不知。")
    assert lost.missing_numbers == ["130", "3445", "3575"] and lost.recall < 0.3
    assert fidelity("用Python写", "用蟒蛇写").missing_entities == ["Python"]


def test_parse_replies_tolerates_fences_chatter_and_repairs():
    assert parse_replies('好的：\n```json\n{"replies": ["甲", "乙"]}\n```', 2) == ["甲", "乙"]
    assert parse_replies('{"replies": ["甲", "乙",]}', 2) == ["甲", "乙"]          # trailing comma repaired
    assert parse_replies('["甲"]', 1) == ["甲"]                                      # bare list accepted
    with pytest.raises(AnswerError) as e:
        parse_replies('{"replies": ["甲"]}', 2)
    assert e.value.reason == "reply_count"
    for bad in ("抱歉，我不能。", '{"answer": "甲"}', '{"replies": [1, 2]}'):
        with pytest.raises(AnswerError) as e:
            parse_replies(bad, 1)
        assert e.value.reason == "bad_json"


def test_parse_turns():
    text = '{"turns": [{"user": "问", "plain": "答", "styled": "我听说答"}]}'
    assert parse_turns(text, 1) == [{"user": "问", "plain": "答", "styled": "我听说答"}]
    with pytest.raises(AnswerError):
        parse_turns('{"turns": [{"user": "问", "plain": "", "styled": "x"}]}', 1)


@pytest.mark.parametrize("name", ["translation_tone", "synthesize"])
def test_every_few_shot_answer_passes_the_gate(name):
    """The prompt's own examples are the bar: each must pass the default gate (echo check aside)."""
    p = load_prompt(name)
    gate = Gate(GateConfig())
    pairs = [(m["content"], m["styled"]) for ex in p.examples for m in ex.get("messages", []) if m["role"] == "assistant"]
    pairs += [(t["plain"], t["styled"]) for ex in p.examples for t in ex.get("turns", [])]
    assert len(pairs) >= 3
    for plain, styled in pairs:
        assert gate.check(plain, styled) == [], styled


def test_gate_reasons():
    p = load_prompt("translation_tone")
    gate = Gate(GateConfig(), p.example_texts())
    plain = "可以试着固定作息，晚上11点前睡觉。"
    reasons = lambda styled: [r for r, _ in gate.check(plain, styled)]  # noqa: E731
    assert reasons("  ") == ["empty_reply"]
    assert reasons(plain) == ["unchanged"]
    assert "echo_prompt" in reasons("你是一位精通\"古文翻译腔\"的改写者。古文翻译腔，是语文课本里" + plain)
    assert "lost_numbers" in reasons("我听说可以试着固定作息，晚上早点睡觉。难道不是吗？嗟乎！方圆十里没有不知道的。")
    assert "low_tone" in reasons("建议你固定作息，晚上11点前睡觉，这样比较好。")
    assert "too_long" in reasons("我听说" + plain + "嗟乎！" * 200)
    assert "drift" in reasons("嗟乎！我听说月亮11点升起，难道不是吗？方圆十里没有不知道的。")
    assert reasons("我听说，" + plain + "难道不是吗？方圆十里没有不知道的。嗟乎！") == []


def test_prompt_load_hash_and_errors(tmp_path):
    p = load_prompt("translation_tone")
    assert p.mode == "rewrite" and len(p.hash) == 12 and p.ref == f"translation_tone@{p.hash}"
    msgs = p.rewrite_messages({"messages": [{"role": "user", "content": "你好"},
                                            {"role": "assistant", "content": "新的", "original": "旧的"}]})
    assert msgs[0]["role"] == "system" and msgs[-1]["role"] == "user"
    assert len(msgs) == 2 + 2 * len(p.examples)
    assert '"reply": 1, "content": "旧的"' in msgs[-1]["content"]   # restyles from the plain original
    copy = tmp_path / "mine.yaml"
    copy.write_bytes(p.path.read_bytes() + b"\n# tweak\n")
    assert load_prompt(copy).hash != p.hash                          # any edit changes the hash
    with pytest.raises(UsageError, match="known: .*translation_tone"):
        load_prompt("no_such_prompt")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmode: rewrite\n", encoding="utf-8")
    with pytest.raises(UsageError, match="missing key"):
        load_prompt(bad)


def test_cache_roundtrip_survives_reopen(tmp_path):
    key = Cache.key("m", [{"role": "user", "content": "hi"}], {"temperature": 0.7})
    assert key != Cache.key("m", [{"role": "user", "content": "hi"}], {"temperature": 0.8})
    cache = Cache(tmp_path / "c.sqlite")
    cache.put(key, "m", "p@1", Completion("答", "stop", 10, 2, "2026-01-01T00:00:00Z"))
    cache.close()
    again = Cache(tmp_path / "c.sqlite")
    hit = again.get(key)
    assert hit.content == "答" and hit.cached and hit.prompt_tokens == 10 and len(again) == 1
