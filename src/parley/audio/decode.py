"""Any audio file (wav, flac, mp3, ogg/opus, webm, ...) to mono float32 at a chosen rate."""

from __future__ import annotations

import io

import numpy as np


class UndecodableAudio(ValueError):
    pass


def resample(pcm: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    if from_hz == to_hz:
        return pcm.astype(np.float32, copy=False)
    import soxr

    return np.asarray(soxr.resample(pcm, from_hz, to_hz, quality="HQ"), dtype=np.float32)


def decode_file(data: bytes, rate_hz: int = 24_000) -> np.ndarray:
    """Decodes with FFmpeg (PyAV), downmixes to mono, resamples with soxr."""
    import av

    if not data:
        raise UndecodableAudio("empty audio body")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = [s for s in container.streams if s.type == "audio"]
            if not streams:
                raise UndecodableAudio("no audio stream in the file")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate_hz)
            chunks = []
            for frame in container.decode(streams[0]):
                for out in resampler.resample(frame):  # type: ignore[arg-type]
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except UndecodableAudio:
        raise
    except Exception as exc:  # PyAV raises many FFmpeg error types
        raise UndecodableAudio(f"could not decode the audio: {type(exc).__name__}") from None
    pcm = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if not pcm.size:
        raise UndecodableAudio("the file holds no audio samples")
    if not np.isfinite(pcm).all():
        raise UndecodableAudio("the audio contains NaN or infinite samples")
    return pcm
