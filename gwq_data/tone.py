"""A 0-1 score for how strongly a reply carries 古文翻译腔, with the markers it found.

The tone is the stilted voice of textbook translations of classical Chinese:
我听说…; 难道…不是…吗？; 方圆十里…没有不…; 嗟乎！/呜呼哀哉！; 古人云…;
就连…也…; exaggerated comparisons; double negatives; parallel clauses; a
closing rhetorical question or life lesson.

Each marker family has a weight; a family counts once, with a small bonus for
repeats. The score saturates: ``1 - exp(-total / SCALE)``, so two or three
strong devices already give ~0.6-0.8 and a plain reply gives ~0.

>>> score("130+3445等于3575。").score
0.0
>>> s = score("我听说算术之道，方圆十里没有不知道的。难道130加3445不是3575吗？")
>>> s.score > 0.6, sorted(s.markers)[:3]
(True, ['fangyuan', 'meiyou_bu', 'nandao_ma'])

What it leaves out: meaning. It rewards the voice, not fidelity; pair it with
the fidelity checks in `generate` and `compare`. It is a lexicon, not a model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_CLAUSE = r"[^。！？!?\n]"

# (family, pattern, weight). Weights: the tone's signature devices ~1, common
# classical flavour ~0.5, weak hints ~0.3.
MARKERS: list[tuple[str, re.Pattern, float]] = [(name, re.compile(p), w) for name, p, w in [
    ("wo_tingshuo", r"我(?:曾)?听说|吾闻|我闻|余闻|我曾听闻", 1.0),
    ("nandao_ma", rf"难道{_CLAUSE}{{1,60}}(?:吗|么|乎|不成)", 1.0),
    ("meiyou_bu", r"没有(?:一个|一人|谁|人)?不|无不|莫不|无一不|没有哪个不", 0.9),
    ("fangyuan", r"方圆[一二三四五六七八九十百千万几数\d]+[里丈尺]", 1.0),
    ("jiehu", r"嗟乎|嗟夫|呜呼|哀哉|噫吁|悲夫|善哉|妙哉|快哉", 1.0),
    ("guren_yun", r"古人(?:云|曰|常说|有云|有言|说过|说)|古语(?:云|有云|说)|先贤(?:云|曰|说)|圣人(?:云|曰|言)|子曰", 0.9),
    ("jiulian_ye", rf"就连{_CLAUSE}{{1,30}}也|即便是{_CLAUSE}{{1,30}}也|纵使{_CLAUSE}{{1,30}}也", 0.7),
    ("comparison", rf"比{_CLAUSE}{{1,20}}还要?{_CLAUSE}{{0,6}}(?:百倍|千倍|万倍|十倍|多少倍)|胜过|远胜|更甚于|有过之而无不及|(?:不亚于|堪比){_CLAUSE}{{1,12}}", 0.6),
    ("double_negative", r"不得不|不能不|不可不|未尝不|不是不|非不|无人不|不敢不", 0.6),
    ("pronoun", r"吾辈|吾等|吾|汝|尔等|在下(?![午面雨一次来去边])|鄙人|窃以为|余以为|阁下|足下", 0.5),
    ("particle", r"(?:(?<![总随反换加久])之|[乎者也矣焉哉兮])(?:[，。！？；]|$)", 0.4),
    ("lesson", r"由此可见|可见|须知|切记|这就是|这便是|此乃|所以说|是故|故曰|诚哉斯言", 0.4),
    ("rhetorical_end", r"(?:吗|乎|哉|呢|耶|欤|否)[？?！!]?\s*$", 0.5),
    ("exclaim", r"(?:啊|矣|哉|乎)！|！{2,}", 0.3),
]]

SCALE = 2.0
REPEAT_BONUS = 0.15  # per extra hit of a family already counted, capped at 2 extras


@dataclass
class ToneScore:
    score: float
    markers: dict[str, int] = field(default_factory=dict)  # family -> hits

    def to_dict(self) -> dict:
        return {"score": round(self.score, 4), "markers": self.markers}


def score(text: str) -> ToneScore:
    """Score one reply. Empty text scores 0."""
    text = text.strip()
    total, found = 0.0, {}
    for name, pattern, weight in MARKERS:
        hits = len(pattern.findall(text))
        if hits:
            found[name] = hits
            total += weight * (1 + REPEAT_BONUS * min(hits - 1, 2))
    return ToneScore(1 - math.exp(-total / SCALE) if total else 0.0, found)


def record_score(record: dict) -> float:
    """Mean tone score over a canonical record's assistant replies (0 if none)."""
    scores = [score(m["content"]).score for m in record["messages"] if m["role"] == "assistant"]
    return sum(scores) / len(scores) if scores else 0.0
