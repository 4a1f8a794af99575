"""The Wyoming TCP adapter in-process on fake backends (named as such): the idle timeout, a
model failing mid-request, and the slot freed on every path out, with the `wyoming` client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import numpy as np
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event

from parley.engine.messages import ErrorMessage
from parley.engine.module import Module, ModuleInfo
from parley.engine.recognition import Audio
from parley.engine.slots import Slot
from parley.server.wyoming_server import WyomingServer, catalog
from tests.test_routes_in_process import FakeRecognitionBackend, FakeSpeechBackend

CHUNK = AudioChunk(16_000, 2, 1, np.zeros(3200, "<i2").tobytes())  # 0.2 s


class FakeFailingBackend(FakeRecognitionBackend):
    """Fault injection: the model fails on the first audio of every session."""

    def step(self, slots: Sequence[Slot]) -> bool:
        for slot in slots:
            if any(isinstance(item, Audio) for item in slot.take_inputs()):
                slot.emit(ErrorMessage("the fake model failed"))
        return False


@asynccontextmanager
async def wyoming(modules: list[Module], idle_timeout_s: float) -> AsyncIterator[int]:
    for m in modules:
        m.start()
        await asyncio.to_thread(m.ready.wait)
    server = WyomingServer(modules, catalog(modules, {}), idle_timeout_s)
    try:
        yield await server.start("127.0.0.1", 0)
    finally:
        await server.stop()
        for m in modules:
            await asyncio.to_thread(m.stop)


async def slots_freed(modules: list[Module]) -> bool:
    for _ in range(100):
        if not any(m.used_slots for m in modules):
            return True
        await asyncio.sleep(0.01)
    return False


async def read_all(client: AsyncTcpClient) -> list[Event]:
    events: list[Event] = []
    while (event := await client.read_event()) is not None:
        events.append(event)
    return events


def test_idle_client_gets_an_error_and_its_slot_back() -> None:
    mods = [Module(ModuleInfo("asr", "FakeStt", "/a", 1), FakeRecognitionBackend())]

    async def go() -> tuple[list[Event], bool, list[Event]]:
        async with wyoming(mods, idle_timeout_s=0.3) as port:
            async with AsyncTcpClient("127.0.0.1", port, read_timeout=5) as idle:
                await idle.write_event(AudioStart(16_000, 2, 1).event())
                await idle.write_event(CHUNK.event())  # then nothing: the slot is held
                events = await read_all(idle)
            freed = await slots_freed(mods)
            async with AsyncTcpClient("127.0.0.1", port, read_timeout=5) as next_client:
                await next_client.write_event(CHUNK.event())
                await next_client.write_event(AudioStop().event())
                served: list[Event] = []
                while (event := await next_client.read_event()) is not None:
                    served.append(event)
                    if event.type == "transcript-stop":
                        break
            return events, freed, served

    events, freed, served = asyncio.run(go())
    assert events[-1].type == "error" and events[-1].data["code"] == "idle"
    assert freed
    assert served[0].type == "transcript-start"
    assert [e.type for e in served[-2:]] == ["transcript", "transcript-stop"]


def test_a_failing_model_errors_that_request_only() -> None:
    mods = [
        Module(ModuleInfo("asr", "FakeFailingStt", "/a", 2), FakeFailingBackend()),
        Module(ModuleInfo("tts", "FakeTts", "/t", 2), FakeSpeechBackend()),
    ]

    async def go() -> tuple[list[Event], list[Event], bool]:
        async with wyoming(mods, idle_timeout_s=10) as port:
            async with (
                AsyncTcpClient("127.0.0.1", port, read_timeout=5) as failing,
                AsyncTcpClient("127.0.0.1", port, read_timeout=5) as speaking,
            ):
                await speaking.write_event(Event("synthesize-start"))
                await failing.write_event(CHUNK.event())
                failed = await read_all(failing)
                await speaking.write_event(Event("synthesize-chunk", {"text": "still here"}))
                await speaking.write_event(Event("synthesize-stop"))
                spoken: list[Event] = []
                while (event := await speaking.read_event()) is not None:
                    spoken.append(event)
                    if event.type == "synthesize-stopped":
                        break
            return failed, spoken, await slots_freed(mods)

    failed, spoken, freed = asyncio.run(go())
    assert [e.type for e in failed] == ["transcript-start", "error"]
    assert failed[-1].data == {"text": "the fake model failed", "code": "session"}
    assert [e.type for e in spoken] == [
        "audio-start",
        "audio-chunk",
        "audio-stop",
        "synthesize-stopped",
    ]
    assert freed
