"""Streaming Piper TTS for a table of slots: words in, 80 ms frames and word times out.

Each slot gathers words into phrases (`text.PhraseBuffer`). Every tick the model thread takes
the new input of every slot, then synthesises one ready phrase, chosen earliest-deadline-first:
a stream that has no audio yet goes first (its listener is waiting for first audio), then the
stream whose already-sent audio runs out soonest in real time. The phrase's audio is cut into
1920-sample frames and sent at once, each word's `Text` just before the frame where it starts.
While phrases wait, the step reports busy and the engine ticks again at once, so synthesis runs
back to back; a stream far ahead of real time yields to the others.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley import metrics
from parley.backends.tts.piper_voice import OUTPUT_RATE_HZ, PiperSynth, WordTime
from parley.backends.tts.text import Phrase, PhraseBuffer
from parley.engine.backend import FRAME_SAMPLES, Backend
from parley.engine.slots import Slot
from parley.protocol import tts
from parley.protocol.common import ErrorMessage

log = logging.getLogger(__name__)

MAX_PENDING_CHARS = 256 * 1024  # text waiting for synthesis in one stream
MIN_LENGTH_SCALE, MAX_LENGTH_SCALE = 0.25, 4.0
MAX_PITCH_SEMITONES = 12.0


# --- what sessions push --------------------------------------------------------------------
@dataclass(frozen=True)
class Configure:
    """First item of a session: its voice and delivery."""

    voice: str
    length_scale: float = 1.0  # > 1 slower; speed = 1 / length_scale
    pitch_semitones: float = 0.0


@dataclass(frozen=True)
class SpeakText:
    text: str
    end_word: bool  # True: the text is whole words (moshi protocol); False: token pieces
    pitch_semitones: float | None = None  # change of pitch from here on


@dataclass(frozen=True)
class Flush:
    """Synthesise everything received so far (the token socket's `{"flush": true}`)."""


@dataclass(frozen=True)
class EndOfText:
    """No more text: synthesise the rest, send it, then `StreamEnd`."""


@dataclass(frozen=True)
class StreamEnd:
    """Sent by the backend after the last frame of a stream that ended its text."""


# --- per-slot state ------------------------------------------------------------------------
@dataclass
class _Stream:
    slot: Slot
    synth: PiperSynth
    text: PhraseBuffer
    length_scale: float = 1.0
    pitch_semitones: float = 0.0
    phrases: deque[tuple[Phrase, float]] = field(default_factory=deque)  # (phrase, pitch)
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    words: deque[WordTime] = field(default_factory=deque)  # not yet sent (start in the tail)
    sent_samples: int = 0  # framed and sent
    first_audio_at: float | None = None
    ready_since: float | None = None
    ended: bool = False
    flushing: bool = False  # send the partial last frame once the queued phrases are out
    done: bool = False
    started: bool = False

    @property
    def timeline_samples(self) -> int:
        return self.sent_samples + len(self.tail)

    def deadline(self) -> float:
        """When this stream's listener runs out of audio (earliest goes first)."""
        if self.first_audio_at is None:
            return -1e9 + (self.ready_since or 0.0)
        return self.first_audio_at + self.sent_samples / OUTPUT_RATE_HZ


@dataclass
class PiperOptions:
    default_voice: str = "en_US-joe-medium"
    first_phrase_words: int = 10
    max_phrase_words: int = 24
    max_phrase_chars: int = 200


class PiperTtsBackend(Backend):
    kind = "PiperTts"
    metrics_prefix = "py"

    def __init__(
        self,
        voices: dict[str, PiperSynth],
        batch_size: int,
        options: PiperOptions,
        name: str = "tts",
    ) -> None:
        if options.default_voice not in voices:
            raise ValueError(f"default voice {options.default_voice!r} is not configured")
        self.voices = voices
        self.options = options
        self.batch_size = batch_size
        self._streams: list[_Stream | None] = [None] * batch_size
        self._labels = {"module": name}
        self._pitch: Any = None

    def describe(self) -> dict[str, Any]:
        return {
            "voices": sorted(self.voices),
            "default_voice": self.options.default_voice,
            "sample_rate_hz": OUTPUT_RATE_HZ,
        }

    def warmup(self) -> None:
        for synth in self.voices.values():
            synth.synthesize(["Hello", "there."])

    def attach(self, slot: Slot) -> None:
        self._streams[slot.index] = None  # created on the session's Configure

    def detach(self, index: int) -> None:
        self._streams[index] = None

    # --- the tick ------------------------------------------------------------------------
    def step(self, slots: Sequence[Slot]) -> bool:
        now = time.monotonic()
        live: list[_Stream] = []
        for slot in slots:
            stream = self._take_inputs(slot, now)
            if stream is not None and not stream.done:
                live.append(stream)
        metrics.TTS_TOTAL_STEPS.labels(**self._labels).inc()
        waiting = [s for s in live if s.phrases]
        for s in live:
            if not s.phrases and s.started and not s.ended:
                metrics.TTS_MISSING_WORDS_STEPS.labels(**self._labels).inc()
            elif s.phrases:
                metrics.TTS_COULD_HAVE_RUN_STEPS.labels(**self._labels).inc()
        if waiting:
            chosen = min(waiting, key=lambda s: s.deadline())
            metrics.TTS_ACTIVE_STEPS.labels(**self._labels).inc()
            self._synthesize_next(chosen)
        for s in live:
            if s.ended and not s.phrases and not s.done:
                self._finish(s)
            elif s.flushing and not s.phrases and not s.done:
                self._send_frames(s, pad=True)
                s.flushing = False
        return any(s.phrases for s in live)

    def _take_inputs(self, slot: Slot, now: float) -> _Stream | None:
        stream = self._streams[slot.index]
        for item in slot.take_inputs():
            if isinstance(item, Configure):
                stream = self._open(slot, item)
                continue
            if stream is None or stream.done:
                continue  # the session failed or ended; late input is dropped
            try:
                self._apply(stream, item)
            except ValueError as exc:
                self._fail(stream, str(exc))
                return stream
        if stream is not None and stream.phrases and stream.ready_since is None:
            stream.ready_since = now
        return stream

    def _open(self, slot: Slot, cfg: Configure) -> _Stream | None:
        synth = self.voices.get(cfg.voice)
        if synth is None:  # routes check first; this guards other callers
            slot.emit(ErrorMessage(f"unknown voice {cfg.voice!r}"))
            return None
        o = self.options
        stream = _Stream(
            slot,
            synth,
            PhraseBuffer(o.first_phrase_words, o.max_phrase_words, o.max_phrase_chars),
            length_scale=cfg.length_scale,
            pitch_semitones=cfg.pitch_semitones,
        )
        self._streams[slot.index] = stream
        return stream

    def _apply(self, s: _Stream, item: Any) -> None:
        if isinstance(item, SpeakText):
            if item.pitch_semitones is not None:
                s.pitch_semitones = item.pitch_semitones
            s.started = True
            s.text.add(item.text, end_word=item.end_word)
            if s.text.pending_chars > MAX_PENDING_CHARS:
                raise ValueError(
                    f"over {MAX_PENDING_CHARS} characters of text waiting for synthesis"
                )
        elif isinstance(item, Flush):
            s.text.flush()
            s.flushing = True
        elif isinstance(item, EndOfText):
            s.text.flush()
            s.ended = True
        else:
            raise ValueError(f"unexpected input {type(item).__name__}")
        for phrase in s.text.take_ready():
            s.phrases.append((phrase, s.pitch_semitones))

    def _fail(self, s: _Stream, message: str) -> None:
        s.slot.emit(ErrorMessage(message))
        s.done = True
        s.phrases.clear()

    # --- synthesis -----------------------------------------------------------------------
    def _synthesize_next(self, s: _Stream) -> None:
        phrase, pitch = s.phrases.popleft()
        s.ready_since = None
        try:
            if phrase.words:
                result = s.synth.synthesize(phrase.words, s.length_scale)
                pcm, words = result.pcm, result.words
                metrics.TTS_PHRASE_DURATION.labels(**self._labels).observe(result.seconds)
                if pitch:
                    pcm = self._shift_pitch(pcm, pitch)
            else:
                pcm, words = np.zeros(0, np.float32), []
        except Exception as exc:  # one bad phrase must not stop the other streams
            log.exception("phrase synthesis failed: %r", phrase.text)
            self._fail(s, f"synthesis failed: {exc}")
            return
        if phrase.pause_s:
            silence = np.zeros(round(phrase.pause_s * OUTPUT_RATE_HZ), np.float32)
            pcm = np.concatenate([pcm, silence])
        metrics.TTS_AUDIO_SECONDS.labels(**self._labels).inc(len(pcm) / OUTPUT_RATE_HZ)
        offset_s = s.timeline_samples / OUTPUT_RATE_HZ
        s.words.extend(
            WordTime(w.text, round(offset_s + w.start_s, 3), round(offset_s + w.stop_s, 3))
            for w in words
        )
        s.tail = np.concatenate([s.tail, pcm.astype(np.float32, copy=False)])
        self._send_frames(s, pad=False)

    def _shift_pitch(self, pcm: np.ndarray, semitones: float) -> np.ndarray:
        from parley.audio.pitch import shift_pitch

        return shift_pitch(pcm, OUTPUT_RATE_HZ, semitones)

    def _send_frames(self, s: _Stream, pad: bool) -> None:
        if pad and len(s.tail) % FRAME_SAMPLES:
            missing = FRAME_SAMPLES - len(s.tail) % FRAME_SAMPLES
            s.tail = np.concatenate([s.tail, np.zeros(missing, np.float32)])
        n_frames = len(s.tail) // FRAME_SAMPLES
        for i in range(n_frames):
            frame = s.tail[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            frame_end_s = (s.sent_samples + FRAME_SAMPLES) / OUTPUT_RATE_HZ
            while s.words and s.words[0].start_s < frame_end_s:
                w = s.words.popleft()
                s.slot.emit(tts.WordTimes(w.text, w.start_s, w.stop_s))
            if s.first_audio_at is None:
                s.first_audio_at = time.monotonic()
            s.slot.emit(tts.Audio(frame.copy()))
            s.sent_samples += FRAME_SAMPLES
        s.tail = s.tail[n_frames * FRAME_SAMPLES :]
        if pad:  # nothing is left to send: words said in the padding (none in practice)
            while s.words:
                w = s.words.popleft()
                s.slot.emit(tts.WordTimes(w.text, w.start_s, w.stop_s))

    def _finish(self, s: _Stream) -> None:
        self._send_frames(s, pad=True)
        s.slot.emit(StreamEnd())
        s.done = True


def check_delivery(length_scale: float, pitch_semitones: float) -> None:
    """Raises ValueError for a speed or pitch the backend will not render."""
    if not (math.isfinite(length_scale) and MIN_LENGTH_SCALE <= length_scale <= MAX_LENGTH_SCALE):
        raise ValueError(
            f"length scale {length_scale} outside {MIN_LENGTH_SCALE}..{MAX_LENGTH_SCALE}"
        )
    if not (math.isfinite(pitch_semitones) and abs(pitch_semitones) <= MAX_PITCH_SEMITONES):
        raise ValueError(f"pitch_shift must be between -12 and 12 semitones, got {pitch_semitones}")
