"""Pitch shift that keeps the duration: FFmpeg's `asetrate` + `aresample` + `atempo` (PyAV).

`asetrate` reinterprets the samples at rate x r (pitch and speed both x r), `aresample` brings
them back to the original rate, and `atempo` (WSOLA time stretching) slows them by 1/r, so the
pitch moves by r = 2^(semitones/12) while the length stays the same.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def _atempo_chain(factor: float) -> list[float]:
    """atempo takes 0.5..2.0 per instance (older FFmpeg); chain for larger factors."""
    parts = []
    while factor > 2.0:
        parts.append(2.0)
        factor /= 2.0
    while factor < 0.5:
        parts.append(0.5)
        factor /= 0.5
    parts.append(factor)
    return parts


def shift_pitch(pcm: np.ndarray, rate_hz: int, semitones: float) -> np.ndarray:
    if not semitones or pcm.size == 0:
        return pcm
    out = _filter(pcm, rate_hz, 2.0 ** (semitones / 12.0))
    # WSOLA leaves the length within a few ms; exact length keeps word times exact.
    if len(out) >= len(pcm):
        return out[: len(pcm)]
    return np.concatenate([out, np.zeros(len(pcm) - len(out), np.float32)])


def _filter(pcm: np.ndarray, rate_hz: int, pitch_ratio: float) -> np.ndarray:
    import av
    import av.filter

    graph = av.filter.Graph()
    src = graph.add_abuffer(
        format="flt", sample_rate=rate_hz, layout="mono", time_base=Fraction(1, rate_hz)
    )
    chain = [src]
    chain.append(graph.add("asetrate", f"{rate_hz * pitch_ratio:.3f}"))
    chain.append(graph.add("aresample", str(rate_hz)))
    for factor in _atempo_chain(1.0 / pitch_ratio):
        chain.append(graph.add("atempo", f"{factor:.6f}"))
    sink = graph.add("abuffersink")
    chain.append(sink)
    for a, b in zip(chain, chain[1:], strict=False):
        a.link_to(b)
    graph.configure()
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
    )
    frame.sample_rate = rate_hz
    frame.pts = 0
    frame.time_base = Fraction(1, rate_hz)
    graph.push(frame)
    graph.push(None)
    out = []
    while True:
        try:
            f = graph.pull()
        except (av.error.BlockingIOError, av.error.EOFError):
            break
        out.append(f.to_ndarray().reshape(-1))
    return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)
