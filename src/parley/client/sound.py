"""Microphone, speakers and WAV files for the CLI.

`sounddevice` (the `audio` extra) needs the PortAudio C library, so it is imported only when a
command asks for a sound device; without one the command says so instead of failing on import.
Players also measure what a listener would hear: when playback started, and how often the
buffer ran dry (underruns) before the audio was complete.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from parley.engine.backend import SAMPLE_RATE_HZ


class NoSoundDevice(Exception):
    """sounddevice, PortAudio or a suitable device is missing."""


def load_sounddevice(kind: str) -> Any:
    """The `sounddevice` module, once a default `kind` ("input"/"output") device exists."""
    try:
        import sounddevice
    except ImportError:
        raise NoSoundDevice(
            "sound needs the 'sounddevice' package: pip install 'parley[audio]'"
        ) from None
    except OSError as exc:  # the package is there, the PortAudio library is not
        raise NoSoundDevice(
            f"no sound support ({exc}); install PortAudio, e.g. apt install libportaudio2"
        ) from None
    try:
        sounddevice.query_devices(kind=kind)
    except Exception as exc:  # PortAudioError or ValueError, depending on the host
        raise NoSoundDevice(f"no default {kind} sound device ({exc})") from None
    return sounddevice


def write_wav(path: str | Path, pcm: np.ndarray, rate_hz: int = SAMPLE_RATE_HZ) -> None:
    """16-bit mono WAV."""
    samples = (np.clip(pcm, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate_hz)
        w.writeframes(samples.tobytes())


class VirtualPlayer:
    """Plays nothing, but keeps the clock a real player would: audio starts with the first
    frame and runs at real time; a frame that arrives after the buffer ran dry is an underrun
    and delays the rest. What `speak -o` reports when there are no speakers."""

    def __init__(self, rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self.rate_hz = rate_hz
        self.started_at: float | None = None
        self.ends_at = 0.0  # monotonic time at which everything pushed so far has played
        self.underruns = 0
        self.stalled_s = 0.0

    def push(self, pcm: np.ndarray) -> None:
        now = time.monotonic()
        duration_s = len(pcm) / self.rate_hz
        if self.started_at is None:
            self.started_at, self.ends_at = now, now + duration_s
            return
        if now > self.ends_at:
            self.underruns += 1
            self.stalled_s += now - self.ends_at
            self.ends_at = now
        self.ends_at += duration_s

    async def finish(self) -> float:
        """Seconds from the first sound to the end of playback."""
        return 0.0 if self.started_at is None else self.ends_at - self.started_at


class SpeakerPlayer:
    """Plays frames on the default output device as they arrive (starting with the first)."""

    def __init__(self, sounddevice: Any, rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self._sd = sounddevice
        self.rate_hz = rate_hz
        self._queue: collections.deque[np.ndarray] = collections.deque()
        self._lock = threading.Lock()
        self._complete = False  # no more frames will come
        self._dry = False  # in an underrun right now (counted once per dry spell)
        self._done = threading.Event()
        self._stream: Any = None
        self.started_at: float | None = None
        self.underruns = 0
        self.stalled_s = 0.0
        self._dry_since = 0.0

    def push(self, pcm: np.ndarray) -> None:
        with self._lock:
            self._queue.append(np.asarray(pcm, np.float32))
        if self._stream is None:
            self.started_at = time.monotonic()
            self._stream = self._sd.OutputStream(
                samplerate=self.rate_hz,
                channels=1,
                dtype="float32",
                callback=self._fill,
                finished_callback=self._done.set,
            )
            self._stream.start()

    def _fill(self, outdata: np.ndarray, frames: int, _time: Any, _status: Any) -> None:
        out = outdata[:, 0]
        filled = 0
        with self._lock:
            while filled < frames and self._queue:
                head = self._queue[0]
                take = min(frames - filled, len(head))
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
            complete = self._complete
        out[filled:] = 0.0
        if filled < frames and not complete:
            if not self._dry:
                self._dry, self._dry_since = True, time.monotonic()
                self.underruns += 1
        elif self._dry:
            self._dry = False
            self.stalled_s += time.monotonic() - self._dry_since
        if complete and filled < frames:
            raise self._sd.CallbackStop

    async def finish(self) -> float:
        with self._lock:
            self._complete = True
        if self._stream is None or self.started_at is None:
            return 0.0
        await asyncio.to_thread(self._done.wait)
        self._stream.close()
        return time.monotonic() - self.started_at
