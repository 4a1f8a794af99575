"""Word error rate with the normalisation the eval clips need (case, punctuation, numbers,
spelling variants): "9" for "nine" or "grey" for "gray" is not a recognition error."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"mr": "mister", "mrs": "missus", "dr": "doctor"}
# Whisper writes British spellings now and then; references here are American.
_SPELLINGS = {
    "grey": "gray",
    "colour": "color",
    "colours": "colors",
    "favourite": "favorite",
    "harbour": "harbor",
    "neighbour": "neighbor",
    "neighbours": "neighbors",
    "centre": "center",
    "theatre": "theater",
    "realise": "realize",
    "realised": "realized",
    "travelled": "traveled",
    "okay": "ok",
}
_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_NON_WORD = re.compile(r"[^a-z0-9' ]+")


def _number_words(n: int) -> list[str]:
    """0..999 in words, as people say them ("one hundred twenty three")."""
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    return [_ONES[n // 100], "hundred"] + (_number_words(n % 100) if n % 100 else [])


def _words_of(token: str) -> list[str]:
    if token.isdigit() and len(token) <= 3:
        return _number_words(int(token))
    token = _ABBREVIATIONS.get(token, token)
    return [_SPELLINGS.get(token, token)]


def normalize(text: str) -> list[str]:
    text = text.lower().replace("\u2019", "'").replace("-", " ")
    tokens = (w.strip("'") for w in _NON_WORD.sub(" ", text).split())
    return [word for token in tokens if token for word in _words_of(token)]


def wer(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    refs = [" ".join(normalize(r)) for r in references]
    hyps = [" ".join(normalize(h)) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))
