"""Word error rate with the normalisation the eval clips need (case, punctuation, numbers)."""

from __future__ import annotations

import re

_NUMBER_WORDS = {"mr": "mister", "mrs": "missus", "dr": "doctor"}
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def normalize(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    words = _NON_WORD.sub(" ", text).split()
    return [_NUMBER_WORDS.get(w, w) for w in (w.strip("'") for w in words) if w]


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    refs = [" ".join(normalize(r)) for r in references]
    hyps = [" ".join(normalize(h)) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
