"""`parley serve --wyoming-port`, driven by the `wyoming` package's own `AsyncTcpClient`
(Home Assistant's client library), with the real tiny.en and joe-medium models.

One server (Whisper and Piper, 4 slots each) serves every test here; clips are short.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.event import Event, async_read_event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from parley.audio.decode import resample
from parley.bench.wer import normalize, wer
from tests.conftest import EVAL_DIR, Server, free_port, load_clip, packaged_model_dir, serving

SLOTS = 4
READ_TIMEOUT_S = 60.0
CLIP = EVAL_DIR / "pocketsphinx" / "librivox_0930.wav"  # 3.3 s
CLIP_TEXT = "he might even have been made amiable himself"
LONG_CLIP = EVAL_DIR / "pocketsphinx" / "librivox_0870.wav"  # 7.1 s
SHORT_CLIPS = {
    EVAL_DIR / "pocketsphinx" / "librivox_0880.wav": "he was not an ill disposed young man",
    EVAL_DIR / "coqui_tts_ljspeech" / "LJ001-0002.wav": "in being comparatively modern.",
    CLIP: CLIP_TEXT,
    EVAL_DIR / "pocketsphinx" / "librivox_0890.wav": (
        "unless to be rather cold hearted and rather selfish is to be ill disposed"
    ),
}
SPOKEN = "The quick brown fox jumps over the lazy dog. It was a bright cold day in April."


@dataclass
class WyomingServer:
    server: Server
    port: int

    def client(self) -> AsyncTcpClient:
        return AsyncTcpClient("127.0.0.1", self.port, read_timeout=READ_TIMEOUT_S)

    def used_slots(self) -> dict[str, int]:
        return {str(m["name"]): int(m["used_slots"]) for m in self.server.modules_info()}  # type: ignore[call-overload]

    def wait_all_free(self, timeout_s: float = 5.0) -> dict[str, int]:
        deadline = time.monotonic() + timeout_s
        while any(self.used_slots().values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.used_slots()


@pytest.fixture(scope="module")
def wyoming(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WyomingServer]:
    port = free_port()
    for srv in serving(
        tmp_path_factory.mktemp("wyoming"),
        f"""
[modules.asr]
type = "WhisperStreaming"
batch_size = {SLOTS}
model = "{packaged_model_dir()}"
[modules.tts]
type = "PiperTts"
batch_size = {SLOTS}
voice_aliases = {{ narrator = "en_US-joe-medium" }}
""",
        ["--wyoming-port", str(port)],
    ):
        yield WyomingServer(srv, port)


def s16(pcm_24k: np.ndarray, rate: int = 16_000) -> bytes:
    return (np.clip(resample(pcm_24k, 24_000, rate), -1, 1) * 32767).astype("<i2").tobytes()


def encode(pcm_24k: np.ndarray, rate: int, width: int, channels: int) -> bytes:
    """A clip as integer PCM in any format (the second channel, if any, a quieter copy)."""
    mono = np.clip(resample(pcm_24k, 24_000, rate), -1, 1)
    full = 2 ** (8 * width - 1) - 1
    lanes = np.stack([mono * (1.0 - 0.3 * c) for c in range(channels)]).T * full
    if width == 1:
        return (lanes + 128).astype("u1").tobytes()
    return lanes.astype({2: "<i2", 4: "<i4"}[width]).tobytes()


@dataclass
class Heard:
    events: list[Event] = field(default_factory=list)
    chunks_before_stop: int = 0  # transcript-chunk events read before audio-stop was sent
    stop_sent_at: float | None = None

    @property
    def transcript(self) -> str:
        (text,) = [Transcript.from_event(e).text for e in self.events if e.type == "transcript"]
        return text

    @property
    def chunks(self) -> list[str]:
        return [e.data["text"] for e in self.events if e.type == "transcript-chunk"]

    @property
    def types(self) -> list[str]:
        return [e.type for e in self.events]


async def transcribe(
    client: AsyncTcpClient,
    audio: bytes,
    fmt: tuple[int, int, int] = (16_000, 2, 1),
    chunk_ms: int = 20,
    pace: float = 0.0,  # 1.0: real time; 0: as fast as the socket takes it
    send_stop: bool = True,
    **request: Any,
) -> Heard:
    """One transcription on an open connection: every event up to `transcript-stop`."""
    rate, width, channels = fmt
    chunk_bytes = rate * chunk_ms // 1000 * width * channels
    heard = Heard()

    async def read() -> None:
        while True:
            event = await client.read_event()
            assert event is not None, f"connection closed; heard {heard.types}"
            heard.events.append(event)
            if event.type == "transcript-chunk" and heard.stop_sent_at is None:
                heard.chunks_before_stop += 1
            if event.type in ("transcript-stop", "error"):
                return

    reader = asyncio.create_task(read())
    await client.write_event(Transcribe(language="en", **request).event())
    await client.write_event(AudioStart(rate, width, channels).event())
    start = time.monotonic()
    for i in range(0, len(audio), chunk_bytes):
        if reader.done():
            break
        await client.write_event(
            AudioChunk(rate, width, channels, audio[i : i + chunk_bytes]).event()
        )
        if pace:
            sent_s = (i + chunk_bytes) / (rate * width * channels)
            await asyncio.sleep(max(0.0, start + sent_s / pace - time.monotonic()))
    if send_stop:
        heard.stop_sent_at = time.monotonic()
        await client.write_event(AudioStop().event())
    await reader
    return heard


async def synthesize(client: AsyncTcpClient, text: str, voice: str | None = None) -> list[Event]:
    await client.write_event(Synthesize(text, voice=SynthesizeVoice(name=voice)).event())
    return await read_until(client, "audio-stop")


async def read_until(client: AsyncTcpClient, last: str) -> list[Event]:
    events: list[Event] = []
    while True:
        event = await client.read_event()
        assert event is not None, f"connection closed after {[e.type for e in events]}"
        events.append(event)
        if event.type in (last, "error"):
            return events


def audio_of(events: list[Event]) -> np.ndarray:
    starts = [e for e in events if e.type == "audio-start"]
    assert len(starts) == 1 and starts[0].data["rate"] == 24_000
    assert starts[0].data["width"] == 2 and starts[0].data["channels"] == 1
    pcm = b"".join(e.payload or b"" for e in events if e.type == "audio-chunk")
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32767


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- describe ------------------------------------------------------------------------------
def test_describe(wyoming: WyomingServer) -> None:
    async def go() -> Info:
        async with wyoming.client() as client:
            await client.write_event(Describe().event())
            event = await client.read_event()
            assert event is not None
            return Info.from_event(event)

    info = run(go())
    (asr,) = info.asr
    assert [(m.name, m.languages) for m in asr.models] == [("asr", ["en"])]
    assert asr.supports_transcript_streaming and not asr.requires_external_vad
    assert asr.version and asr.attribution.name == "Parley"
    (tts,) = info.tts
    assert [(v.name, v.languages) for v in tts.voices] == [("en_US-joe-medium", ["en_US"])]
    assert tts.supports_synthesize_streaming
    assert "piper" in tts.voices[0].attribution.url.lower()


# --- speech to text ------------------------------------------------------------------------
def test_transcribe_16k_in_20ms_chunks_then_again_on_the_same_connection(
    wyoming: WyomingServer,
) -> None:
    before = wyoming.server.metric("asr_connect_total", 'module="asr"')

    async def go() -> tuple[Heard, Heard]:
        async with wyoming.client() as client:
            first = await transcribe(client, s16(load_clip(CLIP)))
            second = await transcribe(client, s16(load_clip(LONG_CLIP)))
            return first, second

    first, second = run(go())
    for heard, reference in ((first, CLIP_TEXT), (second, None)):
        assert heard.types[0] == "transcript-start"
        assert heard.types[-2:] == ["transcript", "transcript-stop"]
        assert "".join(heard.chunks) == heard.transcript  # the chunks are the transcript
        if reference:
            assert wer([reference], [heard.transcript]) <= 0.15, heard.transcript
    assert len(second.transcript.split()) >= 15
    assert wyoming.wait_all_free() == {"asr": 0, "tts": 0}
    # One per session.
    assert wyoming.server.metric("asr_connect_total", 'module="asr"') == before + 2


@pytest.mark.parametrize(
    "fmt", [(8_000, 2, 1), (22_050, 1, 1), (44_100, 2, 2), (48_000, 4, 2)], ids=str
)
def test_transcribe_other_rates_widths_and_channels(
    wyoming: WyomingServer, fmt: tuple[int, int, int]
) -> None:
    async def go() -> Heard:
        async with wyoming.client() as client:
            return await transcribe(client, encode(load_clip(CLIP), *fmt), fmt)

    heard = run(go())
    assert wer([CLIP_TEXT], [heard.transcript]) <= 0.25, heard.transcript


def test_transcript_chunks_arrive_before_audio_stop(wyoming: WyomingServer) -> None:
    """Sent in real time (as a satellite streams), words come while the user still speaks."""

    async def go() -> Heard:
        async with wyoming.client() as client:
            return await transcribe(client, s16(load_clip(LONG_CLIP)), pace=1.0)

    heard = run(go())
    assert heard.chunks_before_stop >= 1, heard.events
    assert "".join(heard.chunks) == heard.transcript


def test_module_endpoints_without_audio_stop(wyoming: WyomingServer) -> None:
    """The pause after the utterance ends it: the transcript comes with no audio-stop sent, the
    audio still streaming afterwards is dropped, and the connection transcribes again."""
    pcm = load_clip(CLIP)
    with_pause = np.concatenate([pcm, np.zeros(24_000 * 2, np.float32)])

    async def go() -> tuple[Heard, Heard]:
        async with wyoming.client() as client:
            ended = await transcribe(client, s16(with_pause), send_stop=False)
            await client.write_event(AudioChunk(16_000, 2, 1, bytes(640)).event())
            await client.write_event(AudioStop().event())
            again = await transcribe(client, s16(pcm))
            return ended, again

    ended, again = run(go())
    assert ended.stop_sent_at is None
    assert wer([CLIP_TEXT], [ended.transcript]) <= 0.15, ended.transcript
    assert wer([CLIP_TEXT], [again.transcript]) <= 0.15, again.transcript
    assert "error" not in again.types


# --- text to speech ------------------------------------------------------------------------
def transcribed_back(wyoming: WyomingServer, pcm_24k: np.ndarray) -> str:
    async def go() -> Heard:
        async with wyoming.client() as client:
            return await transcribe(client, s16(pcm_24k, 24_000), (24_000, 2, 1))

    return str(run(go()).transcript)


def test_synthesize(wyoming: WyomingServer) -> None:
    async def go() -> tuple[list[Event], list[Event]]:
        async with wyoming.client() as client:
            named = await synthesize(client, SPOKEN, voice="narrator")  # an alias
            default = await synthesize(client, "Second request.")
            return named, default

    named, default = run(go())
    for events in (named, default):
        assert events[0].type == "audio-start" and events[-1].type == "audio-stop"
    pcm = audio_of(named)
    assert 3.0 <= pcm.size / 24_000 <= 9.0  # 17 words
    heard = transcribed_back(wyoming, pcm)
    assert wer([SPOKEN], [heard]) <= 0.15
    # The last word too: the speech runs to 0.15 s before audio-stop, and Whisper aligned
    # "April." past the end of the audio unless given silence after it.
    assert normalize(heard)[-1:] == ["april"], heard
    assert audio_of(default).size > 0


def test_unknown_voice_is_an_error_naming_the_voices(wyoming: WyomingServer) -> None:
    async def go() -> tuple[list[Event], Event | None]:
        async with wyoming.client() as client:
            events = await synthesize(client, "Hello.", voice="nobody")
            return events, await client.read_event()

    events, after = run(go())
    (error,) = events
    assert error.type == "error" and error.data["code"] == "unknown_voice"
    assert "en_US-joe-medium" in error.data["text"]
    assert after is None  # then the server closed the connection


def test_streaming_synthesis_speaks_before_the_text_is_complete(wyoming: WyomingServer) -> None:
    first, rest = "It was a bright cold day in April. ", "The clocks were striking thirteen."

    async def go() -> tuple[list[Event], list[Event]]:
        async with wyoming.client() as client:
            await client.write_event(SynthesizeStart().event())
            for i in range(0, len(first), 4):  # as an LLM writes: pieces of words
                await client.write_event(SynthesizeChunk(first[i : i + 4]).event())
                await asyncio.sleep(0.01)
            # Nothing more is sent until audio arrives: it must come from the first sentence.
            early = await read_until(client, "audio-chunk")
            for i in range(0, len(rest), 4):
                await client.write_event(SynthesizeChunk(rest[i : i + 4]).event())
            await client.write_event(Synthesize(first + rest).event())  # the legacy copy
            await client.write_event(SynthesizeStop().event())
            return early, await read_until(client, "synthesize-stopped")

    early, late = run(go())
    assert [e.type for e in early] == ["audio-start", "audio-chunk"]
    assert late[-2].type == "audio-stop" and late[-1].type == "synthesize-stopped"
    assert "audio-start" not in [e.type for e in late]  # one stream, spoken once
    pcm = audio_of(early + late)
    assert 3.0 <= pcm.size / 24_000 <= 9.0  # 13 words
    assert wer([first + rest], [transcribed_back(wyoming, pcm)]) <= 0.2


# --- many satellites -----------------------------------------------------------------------
def test_four_clients_at_once_share_the_model(wyoming: WyomingServer) -> None:
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            used = await asyncio.to_thread(wyoming.used_slots)
            peak = max(peak, used["asr"])
            await asyncio.sleep(0.05)

    async def one(path: Path) -> Heard:
        async with wyoming.client() as client:
            return await transcribe(client, s16(load_clip(path)), pace=2.0)

    async def go() -> list[Heard]:
        watcher = asyncio.create_task(watch())
        try:
            return list(await asyncio.gather(*(one(p) for p in SHORT_CLIPS)))
        finally:
            watcher.cancel()

    heard = run(go())
    for h, reference in zip(heard, SHORT_CLIPS.values(), strict=True):
        assert wer([reference], [h.transcript]) <= 0.25, (reference, h.transcript)
    assert peak >= 2  # sessions ran side by side on the one model
    assert wyoming.wait_all_free()["asr"] == 0


def test_full_house_is_an_error_and_a_dropped_client_frees_its_slot(
    wyoming: WyomingServer,
) -> None:
    async def go() -> tuple[list[Event], Heard]:
        holders = [wyoming.client() for _ in range(SLOTS)]
        for c in holders:  # each takes a slot and keeps it (no audio yet)
            await c.connect()
            await c.write_event(AudioStart(16_000, 2, 1).event())
            assert (await c.read_event()).type == "transcript-start"  # type: ignore[union-attr]
        assert (await asyncio.to_thread(wyoming.used_slots))["asr"] == SLOTS
        async with wyoming.client() as late:
            await late.write_event(AudioStart(16_000, 2, 1).event())
            refused = [await late.read_event(), await late.read_event()]
        await holders[0].disconnect()  # dropped without a word: its slot comes back
        async with wyoming.client() as retry:
            heard = await transcribe(retry, s16(load_clip(CLIP)))
        for c in holders[1:]:
            await c.disconnect()
        return refused, heard

    refused, heard = run(go())
    error, closed = refused
    assert error is not None and error.type == "error"
    assert error.data["code"] == "no_free_channels" and "asr" in error.data["text"]
    assert closed is None
    assert wer([CLIP_TEXT], [heard.transcript]) <= 0.15
    assert wyoming.wait_all_free() == {"asr": 0, "tts": 0}


@pytest.mark.parametrize(
    "bad",
    [
        b"this is not json\n",
        b'{"type": "audio-chunk", "payload_length": 100000000}\n',
        b'{"type": "audio-chunk", "data": {"rate": 16000, "width": 3, "channels": 1},'
        b' "payload_length": 6}\n\0\0\0\0\0\0',
    ],
    ids=["malformed", "oversized", "bad-format"],
)
def test_bad_events_close_that_client_only(wyoming: WyomingServer, bad: bytes) -> None:
    before = wyoming.server.metric("asr_client_errors_total", 'module="asr"')

    async def bad_client() -> tuple[Event | None, Event | None]:
        reader, writer = await asyncio.open_connection("127.0.0.1", wyoming.port)
        writer.write(AudioStartLine)  # inside a transcription: it holds a slot
        await writer.drain()
        started = await async_read_event(reader)
        assert started is not None and started.type == "transcript-start"
        writer.write(bad)
        await writer.drain()
        error, closed = [await async_read_event(reader) for _ in range(2)]
        writer.close()
        return error, closed

    async def go() -> tuple[Heard, tuple[Event | None, Event | None]]:
        async with wyoming.client() as good:
            honest = asyncio.create_task(transcribe(good, s16(load_clip(CLIP)), pace=4.0))
            await asyncio.sleep(0.3)
            hurt = await bad_client()
            return await honest, hurt

    heard, (error, closed) = run(go())
    assert error is not None and error.type == "error", error
    assert error.data["code"] in ("protocol", "too_big")
    assert closed is None
    assert wer([CLIP_TEXT], [heard.transcript]) <= 0.15  # the other session is untouched
    assert wyoming.wait_all_free() == {"asr": 0, "tts": 0}
    assert wyoming.server.metric("asr_client_errors_total", 'module="asr"') == before + 1


AudioStartLine = (
    json.dumps({"type": "audio-start", "data": {"rate": 16000, "width": 2, "channels": 1}}).encode()
    + b"\n"
)
