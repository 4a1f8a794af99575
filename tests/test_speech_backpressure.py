"""Backpressure on a real Piper module, in process: once PAUSE_AT_UNREAD_MESSAGES wait unread,
no more phrases are synthesised for that session although more are ready (the model thread
would otherwise run minutes of audio ahead into memory); when the route reads, all the speech
comes, nothing lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from parley.backends.tts.piper import PIPER
from parley.engine.module import Module, ModuleInfo
from parley.engine.sessions import speak_text
from parley.engine.slots import PAUSE_AT_UNREAD_MESSAGES
from parley.engine.speech import SpeechEnd, SpokenWord

# ~100 words, ~40 s of speech: ~600 messages, over twice the pause mark
TEXT = " ".join(["Every evening the old lighthouse keeper climbed the stairs to the lamp."] * 8)
PAUSED_FOR_S = 2.0  # 25 ticks of the model thread: an unpaused stream starts a phrase in one


async def _until(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 (state in another thread)
        await asyncio.sleep(0.05)
    assert condition(), "timed out"


def test_an_unread_speech_session_pauses_and_resumes() -> None:
    backend = PIPER.build("tts", 2, PIPER.options())
    module = Module(ModuleInfo("tts", "PiperTts", "/tts", 2), backend)
    module.start()
    assert module.ready.wait(60)

    async def run() -> None:
        async with module.try_acquire() as session:
            speak_text(session, backend.default_voice, TEXT)

            def stream() -> Any:
                return backend._streams[session.slot.index]

            await _until(lambda: session.outbox.qsize() >= PAUSE_AT_UNREAD_MESSAGES, 120)
            await _until(lambda: stream().in_flight is None, 60)  # the running phrase lands
            unread = session.outbox.qsize()
            await asyncio.sleep(PAUSED_FOR_S)
            assert stream().phrases, "work was waiting"
            assert stream().in_flight is None and session.outbox.qsize() == unread  # paused
            words = []
            while not isinstance(msg := await asyncio.wait_for(session.receive(), 60), SpeechEnd):
                if isinstance(msg, SpokenWord):
                    words.append(msg.text)
            assert " ".join(words) == TEXT  # resumed, nothing lost

    try:
        asyncio.run(run())
    finally:
        module.stop()
