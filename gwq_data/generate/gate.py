"""The quality gate: is one styled reply good enough to keep? Every failure has a reason.

Checks, in order (a reply collects every failure; the first is the row's reason):
  empty_reply   nothing left after stripping
  unchanged     identical to the original (no styling at all)
  echo_prompt   copies 20+ chars of the instructions or of a few-shot answer
  too_short     shorter than min_ratio × the original
  too_long      longer than max_ratio × the original + slack_chars
  lost_numbers  a number of the original is missing (gwq_data.fidelity)
  lost_entities a Latin-script name or quoted term of the original is missing
  drift         ROUGE-L recall of the original's chars below min_overlap
  low_tone      gwq_data.tone score below min_tone

>>> gate = Gate(GateConfig())
>>> gate.check("130+3445等于3575。", "我听说130加3445，难道不是等于3575吗？方圆十里没有不知道的。嗟乎！")
[]
>>> [r for r, _ in gate.check("130+3445等于3575。", "嗟乎！方圆十里没有不知道的，难道不是吗？")]
['lost_numbers', 'drift']

Why recall and not F1: a styled reply is 1.2-3× longer by design, so precision
(and F1) falls as the tone gets richer; recall asks the right question — how much
of the original survived, in order. Lengths allow slack because a 10-char reply
("你好！") legitimately grows a lot.
"""

from __future__ import annotations

from dataclasses import dataclass

from gwq_data.fidelity import fidelity
from gwq_data.tone import score

ECHO_CHARS = 20


@dataclass
class GateConfig:
    min_tone: float = 0.5        # gwq_data.tone score; the prompt's few-shot answers score 0.77-0.98
    min_overlap: float = 0.4     # char ROUGE-L recall of the original; few-shot answers: 0.61-0.86
    min_ratio: float = 0.8       # styled chars ≥ min_ratio × original chars
    max_ratio: float = 4.0       # styled chars ≤ max_ratio × original chars + slack_chars
    slack_chars: int = 150
    keep_numbers: bool = True
    keep_entities: bool = True


class Gate:
    def __init__(self, config: GateConfig, forbidden: list[str] = ()):
        self.config = config
        # Every 20-char window of the prompt text; a reply sharing one copied it.
        self._shingles = {t[i:i + ECHO_CHARS] for t in forbidden for i in range(max(0, len(t) - ECHO_CHARS + 1))}

    def check(self, original: str, styled: str) -> list[tuple[str, str]]:
        """Every (reason, detail) this reply fails; empty means keep it."""
        c, s, o = self.config, styled.strip(), original.strip()
        if not s:
            return [("empty_reply", "the styled reply is empty")]
        if s == o:
            return [("unchanged", "the styled reply equals the original")]
        problems = []
        echo = self._echo(s)
        if echo:
            problems.append(("echo_prompt", f"copies the prompt: {echo!r}"))
        if len(s) < c.min_ratio * len(o):
            problems.append(("too_short", f"{len(s)} chars < {c.min_ratio} × {len(o)} of the original"))
        if len(s) > c.max_ratio * len(o) + c.slack_chars:
            problems.append(("too_long", f"{len(s)} chars > {c.max_ratio} × {len(o)} + {c.slack_chars}"))
        f = fidelity(o, s)
        if c.keep_numbers and f.missing_numbers:
            problems.append(("lost_numbers", f"missing {', '.join(f.missing_numbers[:5])}"))
        if c.keep_entities and f.missing_entities:
            problems.append(("lost_entities", f"missing {', '.join(f.missing_entities[:5])}"))
        if f.recall < c.min_overlap:
            problems.append(("drift", f"keeps {f.recall:.2f} of the original (ROUGE-L recall) < {c.min_overlap}"))
        tone = score(s)
        if tone.score < c.min_tone:
            problems.append(("low_tone", f"tone {tone.score:.2f} < {c.min_tone}"))
        return problems

    def _echo(self, text: str) -> str | None:
        if not self._shingles:
            return None
        for i in range(max(0, len(text) - ECHO_CHARS + 1)):
            if text[i:i + ECHO_CHARS] in self._shingles:
                return text[i:i + ECHO_CHARS]
        return None
