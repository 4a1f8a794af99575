"""Streaming audio encoders: 24 kHz float32 frames in, bytes of a file format out as they come.

mp3 (LAME), aac (ADTS) and flac go through FFmpeg's encoders and muxers (PyAV); opus is Ogg
Opus from libopus via sphn, which writes a page per frame (FFmpeg's Ogg muxer holds pages for
about a second, too long for streaming); wav is a 16-bit header with unknown-length sizes
followed by samples; pcm is raw 16-bit little-endian samples.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from parley.engine.backend import SAMPLE_RATE_HZ

FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
_FFMPEG = {"mp3": ("mp3", "libmp3lame"), "aac": ("adts", "aac"), "flac": ("flac", "flac")}


def wav_header(rate_hz: int, data_bytes: int = 0xFFFFFFFF) -> bytes:
    """A 16-bit mono WAV header; 0xFFFFFFFF sizes mean "length unknown" (streamed)."""
    riff = 0xFFFFFFFF if data_bytes == 0xFFFFFFFF else 36 + data_bytes
    return (
        b"RIFF"
        + struct.pack("<I", riff)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, rate_hz, rate_hz * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def to_s16le(pcm: np.ndarray) -> bytes:
    s16: bytes = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    return s16


class _Sink:
    """A write-only file for PyAV's muxer; bytes are taken out as soon as they are written."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self._buf)
        self._buf.clear()
        return out


class StreamEncoder:
    def __init__(self, fmt: str) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown audio format {fmt!r} (one of {', '.join(FORMATS)})")
        self.fmt = fmt
        self.media_type = MEDIA_TYPES[fmt]
        self._started = False
        self._container: Any = None
        self._stream: Any = None
        self._sink = _Sink()
        self._opus: Any = None
        if fmt in _FFMPEG:
            import av

            container_format, codec = _FFMPEG[fmt]
            self._container = av.open(self._sink, mode="w", format=container_format)
            self._stream = self._container.add_stream(codec, rate=SAMPLE_RATE_HZ)
            self._stream.layout = "mono"
        elif fmt == "opus":
            import sphn

            self._opus = sphn.OpusStreamWriter(SAMPLE_RATE_HZ)

    def encode(self, pcm: np.ndarray) -> bytes:
        """Bytes for these samples (may be empty while an encoder fills a frame)."""
        head = b""
        if not self._started:
            self._started = True
            if self.fmt == "wav":
                head = wav_header(SAMPLE_RATE_HZ)
        if self.fmt in ("wav", "pcm"):
            return head + to_s16le(pcm)
        if pcm.size == 0:  # FFmpeg refuses an empty frame; a stretch may yield none yet
            return b""
        if self._opus is not None:
            return bytes(self._opus.append_pcm(np.ascontiguousarray(pcm, dtype=np.float32)))
        import av

        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(pcm, dtype=np.float32).reshape(1, -1), format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE_HZ
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        """The encoder's tail (buffered frames, trailers)."""
        if self.fmt == "wav" and not self._started:
            self._started = True
            return wav_header(SAMPLE_RATE_HZ)
        if self._container is None:
            return b""
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
