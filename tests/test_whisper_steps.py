"""When the Whisper backend sends its Steps, in process: the real VAD on a real clip, and a
fake decoder (named as such) that can be held back or made to fail, stepped frame by frame."""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import numpy as np
import pytest

from parley import metrics
from parley.backends.stt.whisper import (
    FLUSH_SILENCE_S,
    MAX_BATCH,
    WhisperOptions,
    WhisperStreamingBackend,
)
from parley.backends.stt.whisper_decoder import DecodedWord, DecodeRequest
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.protocol.asr import Audio, Marker, Step, Word
from tests.conftest import EVAL_DIR, load_clip

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ


class FakeDecoder:
    """Stands in for WhisperDecoder: a word every 0.5 s of the audio after the forced prefix,
    once `gate` is open; or an exception."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0
        self.batches: list[int] = []  # windows per call, recorded before the gate

    def warmup(self) -> None:
        pass

    def decode_counting_retries(
        self, requests: list[DecodeRequest]
    ) -> tuple[list[list[DecodedWord]], int]:
        self.batches.append(len(requests))
        assert self.gate.wait(10)
        self.calls += 1
        if self.fail:
            raise RuntimeError("fake decoder failure")
        out = []
        for r in requests:
            end_s = len(r.audio_16k) / 16_000
            starts = np.arange(r.prefix_s + 0.1, end_s - 0.3, 0.5)
            out.append([DecodedWord(f"w{i}", t, t + 0.3, 0.9) for i, t in enumerate(starts)])
        return out, 0


class FakeSlot:
    """What the backend uses of a slot: an inbox and a record of what it emits."""

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.channel_id = 1
        self.closed = False
        self.inbox: list[Any] = []
        self.out: list[Any] = []

    def take_inputs(self) -> list[Any]:
        items, self.inbox = self.inbox, []
        return items

    def emit(self, message: Any) -> None:
        self.out.append(message)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """2.8 s of speech, then silence."""
    return load_clip(EVAL_DIR / "pocketsphinx/librivox_0880.wav")


def start(
    decoder: FakeDecoder, options: WhisperOptions | None = None
) -> tuple[WhisperStreamingBackend, FakeSlot]:
    # `feed` steps frames far faster than real time; backlog_s=0 keeps such a stream on the
    # real-time path (re-decodes, commits by agreement) that these tests are about.
    options = options or WhisperOptions(backlog_s=0)
    backend = WhisperStreamingBackend(decoder, 1, options)  # type: ignore[arg-type]
    slot = FakeSlot()
    backend.attach(slot)  # type: ignore[arg-type]
    return backend, slot


def feed(backend: WhisperStreamingBackend, slot: FakeSlot, pcm: np.ndarray) -> None:
    """Frame by frame, each through one step, as the model thread would in real time."""
    for off in range(0, len(pcm), FRAME_SAMPLES):
        slot.inbox.append(Audio(pcm[off : off + FRAME_SAMPLES]))
        backend.step([slot])  # type: ignore[list-item]


def settle(backend: WhisperStreamingBackend, slot: FakeSlot, timeout_s: float = 10.0) -> None:
    """Steps without new audio until the decodes in flight have come back."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        backend.step([slot])  # type: ignore[list-item]
        if not backend._busy:
            return
        time.sleep(0.005)
    raise AssertionError("decodes did not finish")


def steps(slot: FakeSlot) -> list[int]:
    return [m.step_idx for m in slot.out if isinstance(m, Step)]


def check_order(slot: FakeSlot) -> None:
    """Steps one per frame in order; no word starts before a Step already sent."""
    latest_s = float("-inf")
    for m in slot.out:
        if isinstance(m, Step):
            latest_s = (m.step_idx + 1) * FRAME_S
        elif isinstance(m, Word):
            assert m.start_time >= latest_s - 0.001, (m, latest_s)
    assert steps(slot) == list(range(len(steps(slot))))


def test_streams_due_at_once_are_split_into_batches_of_at_most_max_batch(
    speech: np.ndarray,
) -> None:
    """A batch's windows all wait for the whole batch: six streams due on the same frame go
    out as MAX_BATCH windows to one decode worker and the rest to the other."""
    decoder = FakeDecoder()
    decoder.gate.clear()  # both workers hold their batch until the gate opens
    backend = WhisperStreamingBackend(decoder, 6, WhisperOptions(backlog_s=0))  # type: ignore[arg-type]
    slots = [FakeSlot(i) for i in range(6)]
    for slot in slots:
        backend.attach(slot)  # type: ignore[arg-type]
    for off in range(0, len(speech), FRAME_SAMPLES):
        for slot in slots:
            slot.inbox.append(Audio(speech[off : off + FRAME_SAMPLES]))
        backend.step(slots)  # type: ignore[arg-type]
        if len(decoder.batches) == 2:
            break
    deadline = time.monotonic() + 10
    while len(decoder.batches) < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert MAX_BATCH < 6
    assert sorted(decoder.batches) == sorted([MAX_BATCH, 6 - MAX_BATCH])
    decoder.gate.set()
    backend.close()


def test_steps_of_silence_go_out_at_once() -> None:
    backend, slot = start(FakeDecoder())
    for k in range(20):
        feed(backend, slot, np.zeros(FRAME_SAMPLES, np.float32))
        assert steps(slot) == list(range(k + 1))
    backend.close()


def test_steps_wait_for_the_words_of_their_audio(speech: np.ndarray) -> None:
    decoder = FakeDecoder()
    decoder.gate.clear()  # every decode takes until the gate opens
    backend, slot = start(decoder)
    pcm = np.concatenate([np.zeros(SAMPLE_RATE_HZ // 2, np.float32), speech])
    feed(backend, slot, pcm)
    held_from = len(steps(slot))
    frames = len(pcm) // FRAME_SAMPLES
    # Steps stop where speech starts (0.5 s of silence, then a little before the VAD fires).
    assert 4 <= held_from <= 10 and frames > held_from + 20
    assert not [m for m in slot.out if isinstance(m, Word)]
    decoder.gate.set()
    feed(backend, slot, np.zeros(SAMPLE_RATE_HZ, np.float32))  # the pause: a final decode
    settle(backend, slot)
    feed(backend, slot, np.zeros(FRAME_SAMPLES, np.float32))
    # Everything is out: every word, then every Step up to the last frame.
    assert [m for m in slot.out if isinstance(m, Word)]
    assert len(steps(slot)) == (len(pcm) + SAMPLE_RATE_HZ + FRAME_SAMPLES) // FRAME_SAMPLES
    check_order(slot)
    backend.close()


def test_a_failing_decoder_holds_steps_only_until_the_pause(speech: np.ndarray) -> None:
    backend, slot = start(FakeDecoder(fail=True))
    feed(backend, slot, speech)
    settle(backend, slot)
    frames = len(speech) // FRAME_SAMPLES
    assert len(steps(slot)) < frames
    feed(backend, slot, np.zeros(SAMPLE_RATE_HZ, np.float32))
    settle(backend, slot)
    feed(backend, slot, np.zeros(FRAME_SAMPLES, np.float32))
    assert len(steps(slot)) == (len(speech) + SAMPLE_RATE_HZ + FRAME_SAMPLES) // FRAME_SAMPLES
    assert not [m for m in slot.out if isinstance(m, Word)]
    check_order(slot)
    backend.close()


def test_a_marker_comes_after_its_words_and_steps(speech: np.ndarray) -> None:
    """Mid-speech (no pause yet): the marker's final decode sends the words, then the Steps of
    the audio before the marker, then the marker."""
    backend, slot = start(FakeDecoder())
    cut = int(2.0 * SAMPLE_RATE_HZ) // FRAME_SAMPLES * FRAME_SAMPLES
    feed(backend, slot, speech[:cut])
    slot.inbox.append(Marker(5))
    backend.step([slot])  # type: ignore[list-item]
    settle(backend, slot)
    backend.step([slot])  # type: ignore[list-item]
    marker_at = next(i for i, m in enumerate(slot.out) if isinstance(m, Marker))
    before = slot.out[:marker_at]
    assert [m.step_idx for m in before if isinstance(m, Step)] == list(range(cut // FRAME_SAMPLES))
    assert [m for m in before if isinstance(m, Word)]
    check_order(slot)
    backend.close()


def test_audio_sent_all_at_once_reaches_its_marker(speech: np.ndarray) -> None:
    """Faster than real time the stream is throttled (`max_lag_s`) while decodes run behind;
    neither the throttle nor a pause (where re-decodes wait for the final) may stall it."""
    decoder = FakeDecoder()
    # backlog_s=0: decoded as a real-time stream would be, re-decodes and all.
    backend, slot = start(decoder, WhisperOptions(max_lag_s=0.5, backlog_s=0))
    pcm = np.concatenate([speech, np.zeros(SAMPLE_RATE_HZ * 2, np.float32), speech])
    slot.inbox += [Audio(pcm), Marker(9)]
    deadline = time.monotonic() + 20
    while not any(isinstance(m, Marker) for m in slot.out):
        assert time.monotonic() < deadline, f"stalled after {len(steps(slot))} Steps"
        if not backend.step([slot]):  # type: ignore[list-item]
            time.sleep(0.005)
    assert len(steps(slot)) == -(-len(pcm) // FRAME_SAMPLES)
    assert decoder.calls >= 4
    check_order(slot)
    backend.close()


class RequestRecordingDecoder(FakeDecoder):
    """The fake decoder, recording every request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[DecodeRequest] = []

    def decode_counting_retries(
        self, requests: list[DecodeRequest]
    ) -> tuple[list[list[DecodedWord]], int]:
        self.requests += requests
        return super().decode_counting_retries(requests)


def test_only_a_final_or_tentative_decode_asks_for_a_retry(speech: np.ndarray) -> None:
    """Re-decodes in speech are not final (a result that trips the decoder's guards is then
    no news, not redone on 30 s); the pause's decode, whose words are taken whole, is."""
    decoder = RequestRecordingDecoder()
    backend, slot = start(decoder)
    feed(backend, slot, speech)
    settle(backend, slot)
    feed(backend, slot, np.zeros(SAMPLE_RATE_HZ, np.float32))
    settle(backend, slot)
    finals = [r.final for r in decoder.requests]
    assert finals[0] is False and finals[-1] is True, finals
    assert [m for m in slot.out if isinstance(m, Word)]
    backend.close()


def run_to_marker(backend: WhisperStreamingBackend, slot: FakeSlot) -> None:
    deadline = time.monotonic() + 20
    while not any(isinstance(m, Marker) for m in slot.out):
        assert time.monotonic() < deadline, f"stalled after {len(steps(slot))} Steps"
        if not backend.step([slot]):  # type: ignore[list-item]
            time.sleep(0.005)


def test_audio_far_ahead_of_real_time_is_decoded_like_a_file(speech: np.ndarray) -> None:
    """A whole recording at once: no re-decodes, one offline decode per window, a window
    ending at a long pause or the marker; every word, Step and the marker still come back in
    the protocol's order."""
    decoder = RequestRecordingDecoder()
    backend, slot = start(decoder, WhisperOptions())
    stream = backend._streams[0]
    assert stream is not None
    stream.attached_at += 3600.0  # far ahead of real time however slow this machine is
    pcm = np.concatenate([speech, np.zeros(SAMPLE_RATE_HZ * 3, np.float32), speech])
    slot.inbox += [Audio(pcm), Marker(9)]
    run_to_marker(backend, slot)
    assert [r.offline for r in decoder.requests] == [True, True]
    # The first window ends in the pause, the second holds the second utterance (and, as it
    # ends at the marker, the silence a flush adds).
    longest16 = len(speech) * 16_000 // SAMPLE_RATE_HZ + int((0.5 + FLUSH_SILENCE_S) * 16_000)
    assert all(len(r.audio_16k) < longest16 for r in decoder.requests)
    assert len(steps(slot)) == -(-len(pcm) // FRAME_SAMPLES)
    assert [m for m in slot.out if isinstance(m, Word)]
    check_order(slot)
    backend.close()


class StopsAfterOneUtteranceDecoder(RequestRecordingDecoder):
    """The fake decoder, ending every transcript `stop_after_s` into its new audio: Whisper
    emitting its end of text after a sentence while more speech follows."""

    def __init__(self, stop_after_s: float) -> None:
        super().__init__()
        self.stop_after_s = stop_after_s

    def decode_counting_retries(
        self, requests: list[DecodeRequest]
    ) -> tuple[list[list[DecodedWord]], int]:
        results, retries = super().decode_counting_retries(requests)
        return [
            [w for w in words if w.start_s < r.prefix_s + self.stop_after_s]
            for r, words in zip(requests, results, strict=True)
        ], retries


def test_a_final_that_stops_before_the_speech_does_is_decoded_again(
    speech: np.ndarray,
) -> None:
    """Two utterances 1 s apart in one backlog window: the decoder's transcript ends with the
    first. The speech after its last word is decoded again, and the marker waits for it."""
    decoder = StopsAfterOneUtteranceDecoder(stop_after_s=3.0)
    backend, slot = start(decoder, WhisperOptions())
    stream = backend._streams[0]
    assert stream is not None
    stream.attached_at += 3600.0  # far ahead of real time however slow this machine is
    pcm = np.concatenate([speech, np.zeros(SAMPLE_RATE_HZ, np.float32), speech])
    slot.inbox += [Audio(pcm), Marker(9)]
    run_to_marker(backend, slot)
    second_starts_s = (len(speech) + SAMPLE_RATE_HZ) / SAMPLE_RATE_HZ
    assert len(decoder.requests) >= 2
    assert any(isinstance(m, Word) and m.start_time >= second_starts_s for m in slot.out), (
        "the second utterance's words were lost"
    )
    check_order(slot)
    backend.close()


def test_a_file_sent_without_a_marker_gets_its_words_once_all_of_it_is_taken(
    speech: np.ndarray,
) -> None:
    """A client that sends a recording at once and then nothing (no marker, no more audio:
    LiveKit's Kyutai plugin does this) is waiting for the words: once its audio is all
    taken, the pause ends the window as in real time, decoded like a file."""
    decoder = RequestRecordingDecoder()
    backend, slot = start(decoder, WhisperOptions())
    stream = backend._streams[0]
    assert stream is not None
    stream.attached_at += 3600.0  # far ahead of real time however slow this machine is
    pcm = np.concatenate([speech, np.zeros(int(1.5 * SAMPLE_RATE_HZ), np.float32)])
    slot.inbox.append(Audio(pcm))
    deadline = time.monotonic() + 20
    while not [m for m in slot.out if isinstance(m, Word)]:
        assert time.monotonic() < deadline, "no words without a marker"
        if not backend.step([slot]):  # type: ignore[list-item]
            time.sleep(0.005)
    assert decoder.requests and all(r.offline for r in decoder.requests)
    check_order(slot)
    backend.close()


def test_real_time_audio_is_never_decoded_like_a_file(speech: np.ndarray) -> None:
    decoder = RequestRecordingDecoder()
    backend, slot = start(decoder, WhisperOptions())
    for off in range(0, len(speech), FRAME_SAMPLES):  # paced, a little faster than real time
        feed(backend, slot, speech[off : off + FRAME_SAMPLES])
        time.sleep(FRAME_S * 0.9)
    feed(backend, slot, np.zeros(SAMPLE_RATE_HZ, np.float32))
    settle(backend, slot)
    assert decoder.requests and not any(r.offline for r in decoder.requests)
    backend.close()


def frame_by_frame(
    options: WhisperOptions, pcm: np.ndarray
) -> tuple[RequestRecordingDecoder, FakeSlot, list[tuple[int, int, int]]]:
    """Feeds `pcm` a frame at a time, each decode done before the next frame (a decoder with
    no latency). Per frame: (requests so far, words sent so far, 1 if the VAD is in speech)."""
    decoder = RequestRecordingDecoder()
    backend, slot = start(decoder, options)
    stream = backend._streams[0]
    assert stream is not None
    trace = []
    for off in range(0, len(pcm), FRAME_SAMPLES):
        feed(backend, slot, pcm[off : off + FRAME_SAMPLES])
        settle(backend, slot)
        words = sum(isinstance(m, Word) for m in slot.out)
        trace.append((len(decoder.requests), words, int(stream.in_speech)))
    check_order(slot)
    backend.close()
    return decoder, slot, trace


def test_a_pause_final_is_decoded_before_the_pause_ends(speech: np.ndarray) -> None:
    """`TENTATIVE_FRAMES` into a pause the window is decoded as its final; when the pause
    reaches `endpoint_silence_s` with no speech since, that decode is taken: the utterance's
    last words go out on the pause's last frame with no decode after it. Without tentative
    finals the final decode is taken only then."""
    pcm = np.concatenate([speech, np.zeros(SAMPLE_RATE_HZ, np.float32)])
    for tentative in (True, False):
        options = WhisperOptions(backlog_s=0, tentative_final=tentative)
        _, _, trace = frame_by_frame(options, pcm)
        ends = [k for k in range(1, len(trace)) if trace[k - 1][2] and not trace[k][2]]
        assert ends, "the VAD heard no utterance end"
        last_end = ends[-1]
        requests_at_end, words_at_end, _ = trace[last_end]
        requests_before_end = trace[last_end - 1][0]
        assert words_at_end == trace[-1][1] > 0  # every word out on the pause's last frame
        if tentative:
            assert requests_at_end == requests_before_end == trace[-1][0]
        else:
            assert requests_at_end == requests_before_end + 1  # the final, decoded only now


def test_a_tentative_final_is_a_re_decode_when_speech_resumes(speech: np.ndarray) -> None:
    """Speech after a short pause (longer than `TENTATIVE_FRAMES`, shorter than the
    endpoint): the tentative decode counts as an ordinary re-decode, not a final."""
    part = int(0.8 * SAMPLE_RATE_HZ) // FRAME_SAMPLES * FRAME_SAMPLES
    # 0.16 s, and the clip's own 0.24 s of lead silence: tentative at 0.24 s, endpoint 0.56 s.
    gap = np.zeros(2 * FRAME_SAMPLES, np.float32)
    pcm = np.concatenate([speech[:part], gap, speech[:part], gap, speech[:part]])
    taken = metrics.TENTATIVE_FINALS.labels(module="asr", taken="true")
    not_taken = metrics.TENTATIVE_FINALS.labels(module="asr", taken="false")
    taken_before, not_taken_before = taken._value.get(), not_taken._value.get()
    decoder, slot, _ = frame_by_frame(WhisperOptions(backlog_s=0), pcm)
    assert not_taken._value.get() - not_taken_before >= 2
    assert taken._value.get() == taken_before
    assert [m for m in slot.out if isinstance(m, Word)]


def test_a_window_cut_mid_speech_ends_in_its_longest_pause() -> None:
    """A final taken mid-speech (the window outgrew its limit) is cut in the middle of the
    window's longest stretch the VAD heard as silence (the latest of equals), never in the
    first `MIN_CUT_SPEECH_S`; with no silent frame at all, at the quietest one."""
    backend, slot = start(FakeDecoder())
    stream = backend._streams[0]
    assert stream is not None
    frame16 = FRAME_SAMPLES * 16_000 // SAMPLE_RATE_HZ
    stream.window_start16 = 100 * frame16

    def cut_frames(probs: list[float]) -> float:
        stream.window = np.zeros(len(probs) * frame16, np.float32)
        stream.window_frames = deque(
            (stream.window_start16 + (k + 1) * frame16, p) for k, p in enumerate(probs)
        )
        return backend._pause_cut16(stream) / frame16

    speech, pause = [0.9] * 40, [0.1] * 3
    assert cut_frames(speech + pause + speech + pause + [0.2] + speech) == 85
    assert cut_frames([0.1] * 10 + speech + pause + speech) == 51.5  # not in the first 2 s
    assert cut_frames(speech + [0.6, 0.7] + speech) == 41  # the quietest frame's end
    backend.close()


def test_a_final_decode_repeats_at_most_the_context_of_committed_speech() -> None:
    """A final decode forced to repeat ~7 s of committed words made tiny.en stop right after
    them, losing the utterance's last words ("... the art of printing.", half the time): a
    final's window keeps only `context_s` of committed speech."""
    speech = load_clip(EVAL_DIR / "coqui_tts_ljspeech/LJ001-0005.wav")  # 8.1 s, one sentence
    decoder = RequestRecordingDecoder()
    # No trim for length, and no tentative finals at the sentence's commas (each trims like
    # a final): only the final's own trim.
    options = WhisperOptions(trim_window_s=60.0, backlog_s=0, tentative_final=False)
    backend, slot = start(decoder, options)
    half_s = SAMPLE_RATE_HZ // 2 // FRAME_SAMPLES * FRAME_SAMPLES
    for off in range(0, len(speech) - half_s, half_s):
        feed(backend, slot, speech[off : off + half_s])
        settle(backend, slot)
    assert (
        max(r.prefix_s for r in decoder.requests) > options.context_s + 2
    )  # long committed prefixes before it
    slot.inbox.append(Marker(1))
    backend.step([slot])  # type: ignore[list-item]
    settle(backend, slot)
    backend.step([slot])  # type: ignore[list-item]
    assert any(isinstance(m, Marker) for m in slot.out)
    assert decoder.requests[-1].prefix_s <= options.context_s + 0.5  # the final's
    backend.close()


def test_a_flush_at_the_speech_s_end_is_decoded_with_silence_after_it(
    speech: np.ndarray,
) -> None:
    """Audio that stops mid-speech, then a marker (a Wyoming audio-stop, the end of a file):
    the final decode gets 0.5 s of silence after the audio, as Whisper otherwise aligns the
    last word past the end, where it is dropped ("... cold day in April." lost "April.").
    The fake decoder's words over that silence come back no later than the audio's end."""
    decoder = RequestRecordingDecoder()
    backend, slot = start(decoder)
    cut = int(2.0 * SAMPLE_RATE_HZ) // FRAME_SAMPLES * FRAME_SAMPLES
    feed(backend, slot, speech[:cut])
    slot.inbox.append(Marker(5))
    run_to_marker(backend, slot)
    final = decoder.requests[-1].audio_16k
    assert np.abs(final[-8_000:]).max() == 0.0 and np.abs(final[-9_000:-8_000]).max() > 0.0
    words = [m for m in slot.out if isinstance(m, Word)]
    assert words and words[-1].start_time <= cut / SAMPLE_RATE_HZ
    check_order(slot)
    backend.close()
