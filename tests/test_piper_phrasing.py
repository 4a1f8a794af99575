"""The Piper backend's phrase policy over time, on a fake voice and a fake clock: what is
handed to the voice as one phrase (no model, no timing: the clock is set by the test)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest

from parley.backends.tts import piper
from parley.backends.tts.piper import PiperOptions, PiperTtsBackend
from parley.backends.tts.piper_voice import Synthesis
from parley.engine.slots import Slot
from parley.engine.speech import EndOfText, SpeechConfig, TextPiece

VOICE = "en_US-joe-medium"


class FakeVoice:
    """Records each phrase; says it as 0.3 s of a tone per word."""

    language = "en_US"

    def __init__(self) -> None:
        self.phrases: list[list[str]] = []

    def synthesize(self, words: list[str], alone: bool = True) -> Synthesis:
        self.phrases.append(list(words))
        return Synthesis(np.full(7200 * len(words), 0.1, np.float32), [], 0.0)


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(piper.time, "monotonic", c)
    return c


@pytest.fixture
def rig() -> Iterator[tuple[PiperTtsBackend, FakeVoice, Slot]]:
    voice = FakeVoice()
    backend = PiperTtsBackend({VOICE: voice}, 1, PiperOptions())  # type: ignore[dict-item]
    loop = asyncio.new_event_loop()
    slot = Slot(0, loop, asyncio.Queue(), lambda: None)
    backend.attach(slot)
    slot.push(SpeechConfig(VOICE))
    yield backend, voice, slot
    backend.close()
    loop.close()


def step(backend: PiperTtsBackend, *slots: Slot) -> None:
    """One tick, then waits for the synthesis it started (the fake voice is instant)."""
    backend.step(slots)
    for stream in backend._streams:
        if stream is not None and stream.in_flight is not None:
            stream.in_flight.result()


def test_a_sentence_sent_word_by_word_at_once_is_one_phrase(
    rig: tuple[PiperTtsBackend, FakeVoice, Slot], clock: Clock
) -> None:
    backend, voice, slot = rig
    sentence = (
        "Please remember to water the plants on Tuesday by the kitchen window every evening at "
        "dusk."
    )
    for word in sentence.split():  # Kyutai's client: every word before the first tick
        slot.push(TextPiece(word, whole_words=True))
    step(backend, slot)
    assert voice.phrases == [sentence.split()]


@pytest.mark.parametrize(("words_per_s", "first_phrase"), [(20, 10), (30, 12)])
def test_a_paced_stream_without_punctuation_is_cut_once_the_wait_is_over(
    rig: tuple[PiperTtsBackend, FakeVoice, Slot], clock: Clock, words_per_s: int, first_phrase: int
) -> None:
    """first_phrase_words 10, first_phrase_wait_s 0.35: at 20 words/s the 10th word comes after
    the wait (cut there, as early as ever); at 30 words/s the cut waits for the 12th (0.37 s)."""
    backend, voice, slot = rig
    words = [f"word{i}" for i in range(30)]
    for i, word in enumerate(words):
        clock.now_s = 100.0 + i / words_per_s
        slot.push(TextPiece(word, whole_words=True))
        step(backend, slot)
        if voice.phrases:
            break
    assert voice.phrases == [words[:first_phrase]]


def test_a_slow_sentence_end_within_the_wait_keeps_the_sentence_whole(
    rig: tuple[PiperTtsBackend, FakeVoice, Slot], clock: Clock
) -> None:
    backend, voice, slot = rig
    words = "one two three four five six seven eight nine ten eleven twelve.".split()
    for i, word in enumerate(words):  # 12 words in 0.275 s
        clock.now_s = 100.0 + i * 0.025
        slot.push(TextPiece(word, whole_words=True))
        step(backend, slot)
    slot.push(EndOfText())
    step(backend, slot)
    assert voice.phrases == [words]


def test_listeners_with_audio_ahead_get_the_shortest_remaining_text_first(clock: Clock) -> None:
    voice = FakeVoice()
    options = PiperOptions(cpu_threads=1)  # one phrase at a time: the order shows
    backend = PiperTtsBackend({VOICE: voice}, 2, options)  # type: ignore[dict-item]
    loop = asyncio.new_event_loop()
    slots = [Slot(i, loop, asyncio.Queue(), lambda: None) for i in range(2)]
    try:
        for slot in slots:
            backend.attach(slot)
            slot.push(SpeechConfig(VOICE))
        first = "first sentence of ten words that takes three seconds."
        long_text = f"A {first} " + "Then more and more words. " * 3
        short_text = f"B {first} B last one."
        for slot, text in zip(slots, [long_text, short_text], strict=True):
            for word in text.split():
                slot.push(TextPiece(word, whole_words=True))
            slot.push(EndOfText())
        for _ in range(2):  # the two first phrases (first audio goes first, either order)
            step(backend, *slots)
        assert {p[0] for p in voice.phrases} == {"A", "B"}
        step(backend, *slots)  # both listeners have 3 s of audio: not short of it yet
        assert voice.phrases[2] == ["B", "last", "one."]
    finally:
        backend.close()
        loop.close()
