"""Time and pitch changes through FFmpeg filter graphs (PyAV).

- Tempo (OpenAI `speed`): `atempo`, FFmpeg's WSOLA time stretching, plays the audio `factor`
  times faster at the same pitch. It runs as a stream, so audio leaves as soon as it arrives.
- Pitch (`<pitch>` markup): `asetrate` reinterprets the samples at rate x r (pitch and speed
  both x r), `aresample` brings them back to the original rate, and `atempo` slows them by 1/r,
  so the pitch moves by r = 2^(semitones/12) while the length stays the same.
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


class FilterStream:
    """Mono float32 audio through a chain of FFmpeg audio filters, chunk by chunk."""

    def __init__(self, rate_hz: int, filters: list[tuple[str, str]]) -> None:
        import av.filter

        self.rate_hz = rate_hz
        self._graph = av.filter.Graph()
        chain = [
            self._graph.add_abuffer(
                format="flt", sample_rate=rate_hz, layout="mono", time_base=Fraction(1, rate_hz)
            )
        ]
        chain += [self._graph.add(name, args) for name, args in filters]
        chain.append(self._graph.add("abuffersink"))
        for a, b in zip(chain, chain[1:], strict=False):
            a.link_to(b)
        self._graph.configure()
        self._pts = 0
        self._ended = False

    def push(self, pcm: np.ndarray) -> np.ndarray:
        """Filters `pcm`; returns what the filters let out so far (maybe nothing yet)."""
        import av

        if pcm.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = self.rate_hz
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.rate_hz)
        self._pts += pcm.size
        self._graph.push(frame)
        return self._pull()

    def finish(self) -> np.ndarray:
        """The audio the filters still hold; the stream takes no more after this."""
        if self._ended:
            return np.zeros(0, np.float32)
        self._ended = True
        self._graph.push(None)
        return self._pull()

    def _pull(self) -> np.ndarray:
        import av

        out = []
        while True:
            try:
                f = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            out.append(f.to_ndarray().reshape(-1))
        return np.concatenate(out).astype(np.float32) if out else np.zeros(0, np.float32)


def tempo_stream(rate_hz: int, speed: float) -> FilterStream:
    """Plays audio `speed` times faster (0.25..4), pitch unchanged."""
    return FilterStream(rate_hz, [("atempo", f"{f:.6f}") for f in _atempo_chain(speed)])


def shift_pitch(pcm: np.ndarray, rate_hz: int, semitones: float) -> np.ndarray:
    if not semitones or pcm.size == 0:
        return pcm
    ratio = 2.0 ** (semitones / 12.0)
    filters = [("asetrate", f"{rate_hz * ratio:.3f}"), ("aresample", str(rate_hz))]
    filters += [("atempo", f"{f:.6f}") for f in _atempo_chain(1.0 / ratio)]
    stream = FilterStream(rate_hz, filters)
    out = np.concatenate([stream.push(pcm), stream.finish()])
    # WSOLA leaves the length within a few ms; exact length keeps word times exact.
    if len(out) >= len(pcm):
        return out[: len(pcm)]
    return np.concatenate([out, np.zeros(len(pcm) - len(out), np.float32)])
