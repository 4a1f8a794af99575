"""Kyutai STT and TTS over Wyoming, with tiny random checkpoints written here (gibberish words,
noise-like audio): the machinery only, as Home Assistant's client library drives it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from wyoming.event import Event
from wyoming.info import Describe, Info

from tests.conftest import EVAL_DIR, free_port, load_clip, serving
from tests.kyutai_checkpoints import (
    TTS_VOICE_NAME,
    tiny_tts_voice_path,
    write_tiny_stt_checkpoint,
    write_tiny_tts_checkpoint,
)
from tests.test_wyoming_server import (
    Heard,
    WyomingServer,
    audio_of,
    s16,
    synthesize,
    transcribe,
)

CLIP = EVAL_DIR / "pocketsphinx" / "librivox_0930.wav"


@pytest.fixture(scope="module")
def kyutai(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WyomingServer]:
    stt = write_tiny_stt_checkpoint(tmp_path_factory.mktemp("tiny-stt"))
    tts = write_tiny_tts_checkpoint(tmp_path_factory.mktemp("tiny-tts"))
    port = free_port()
    for srv in serving(
        tmp_path_factory.mktemp("wyoming-kyutai"),
        f"""
[modules.stt]
type = "KyutaiStt"
path = "/api/asr-streaming"
batch_size = 2
hf_repo = "{stt}"
device = "cpu"
[modules.tts]
type = "KyutaiTts"
batch_size = 2
hf_repo = "{tts}"
n_q = 8
voice = "{tiny_tts_voice_path(tts)}"
[wyoming]
port = {port}
modules = ["stt", "tts"]
""",
    ):
        yield WyomingServer(srv, port)


def test_describe_transcribe_and_synthesize(kyutai: WyomingServer) -> None:
    async def go() -> tuple[Info, Heard, list[Event]]:
        async with kyutai.client() as client:
            await client.write_event(Describe().event())
            event = await client.read_event()
            assert event is not None
            heard = await transcribe(client, s16(load_clip(CLIP)), name="stt")
            spoken = await synthesize(client, "Hello there, tiny voice.", voice=TTS_VOICE_NAME)
            return Info.from_event(event), heard, spoken

    info, heard, spoken = asyncio.run(go())
    assert [m.name for m in info.asr[0].models] == ["stt"]
    assert "kyutai" in info.asr[0].models[0].attribution.url
    assert TTS_VOICE_NAME in [v.name for v in info.tts[0].voices]
    assert heard.types[0] == "transcript-start"
    assert heard.types[-2:] == ["transcript", "transcript-stop"]
    assert "".join(heard.chunks) == heard.transcript
    pcm = audio_of(spoken)
    assert pcm.size >= 1920 and np.abs(pcm).max() > 0
    assert kyutai.wait_all_free() == {"stt": 0, "tts": 0}
