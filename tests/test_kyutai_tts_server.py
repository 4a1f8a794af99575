"""Kyutai TTS (`KyutaiTts`) over the real server, with a tiny random checkpoint written here.

The model is random, so its audio is noise-like; what is tested is the machinery on the moshi
TTS protocol: `Ready`, 1920-sample frames at 24 kHz, a `Text` with times for each word sent,
`Eos` ending the stream, unknown voices refused, two sessions at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley.client.tts import ServerError, SpeechResult, speak
from tests.conftest import API_KEY, Server, serving
from tests.kyutai_checkpoints import (
    TTS_VOICE_NAME,
    tiny_tts_voice_path,
    write_tiny_tts_checkpoint,
)


def serve_tiny_tts(tmp: pytest.TempPathFactory, checkpoint: Path, options: str) -> Iterator[Server]:
    yield from serving(
        tmp.mktemp("kyutai-tts-server"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.tts]
type = "KyutaiTts"
batch_size = 2
hf_repo = "{checkpoint}"
n_q = 8
{options}
""",
    )


@pytest.fixture(scope="module")
def kyutai_tts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    checkpoint = write_tiny_tts_checkpoint(tmp_path_factory.mktemp("tiny-tts"))
    voice = f'voice = "{tiny_tts_voice_path(checkpoint)}"'
    yield from serve_tiny_tts(tmp_path_factory, checkpoint, voice)


def base(srv: Server) -> str:
    return f"ws://127.0.0.1:{srv.port}"


def check(result: SpeechResult, words: list[str]) -> None:
    assert result.ready
    assert result.frames and all(len(f) == 1920 for f in result.frames)
    duration_s = len(result.frames) * 0.08
    assert [w.text for w in result.words] == words
    starts = [w.start_s for w in result.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_s <= w.stop_s <= duration_s + 1e-6 for w in result.words)


def test_words_in_frames_and_timestamps_out(kyutai_tts: Server) -> None:
    words = "hello there this is a tiny random voice".split()
    result = asyncio.run(speak(base(kyutai_tts), words, voice=TTS_VOICE_NAME))
    check(result, words)


def test_default_voice_two_sessions_and_llm_pace(kyutai_tts: Server) -> None:
    a = "one two three four five".split()
    b = "the other stream speaks too".split()

    async def run() -> tuple[SpeechResult, SpeechResult]:
        return await asyncio.gather(
            speak(base(kyutai_tts), a, words_per_s=20),
            speak(base(kyutai_tts), b, words_per_s=10),
        )

    ra, rb = asyncio.run(run())
    check(ra, a)
    check(rb, b)


def test_unknown_voice_and_empty_text(kyutai_tts: Server) -> None:
    with pytest.raises(ServerError, match="unknown voice"):
        asyncio.run(speak(base(kyutai_tts), ["hi"], voice="nobody"))
    empty = asyncio.run(speak(base(kyutai_tts), []))
    assert empty.ready and not empty.words


@pytest.fixture(scope="module")
def voice_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(checkpoint, a folder of two voices, the second voice's file)."""
    from safetensors.torch import load_file, save_file

    checkpoint = write_tiny_tts_checkpoint(tmp_path_factory.mktemp("tiny-tts-2"))
    voices = tmp_path_factory.mktemp("voices")
    original = tiny_tts_voice_path(checkpoint)
    (voices / original.name).write_bytes(original.read_bytes())
    tensors = load_file(str(original))
    other = {k: (v.flip(-1) * -1.5).contiguous() for k, v in tensors.items()}
    other_file = voices / original.name.replace(TTS_VOICE_NAME, "other_voice")
    save_file(other, str(other_file))
    return checkpoint, voices, other_file


@pytest.fixture(scope="module")
def two_voices(
    tmp_path_factory: pytest.TempPathFactory, voice_folder: tuple[Path, Path, Path]
) -> Iterator[Server]:
    """Greedy decoding (temp 0) and a folder of two voices, to compare sessions exactly."""
    checkpoint, voices, _ = voice_folder
    options = f'voices_dir = "{voices}"\nvoice = "{TTS_VOICE_NAME}"\ntemp = 0.0'
    yield from serve_tiny_tts(tmp_path_factory, checkpoint, options)


def test_voices_per_session_are_isolated(two_voices: Server) -> None:
    """Each session speaks with its own voice in the same batch; a slot that changes voice
    gives exactly what a fresh session with that voice gives."""
    import numpy as np

    words = "a short sentence to compare".split()

    def say(voice: str) -> np.ndarray:
        return asyncio.run(speak(base(two_voices), words, voice=voice)).pcm

    first_a, first_b = say(TTS_VOICE_NAME), say("other_voice")
    assert first_a.shape == first_b.shape and not np.allclose(first_a, first_b)
    assert np.array_equal(say(TTS_VOICE_NAME), first_a)  # the slot switched back cleanly

    async def both() -> tuple[SpeechResult, SpeechResult]:
        return await asyncio.gather(
            speak(base(two_voices), words, voice="other_voice"),
            speak(base(two_voices), words, voice=TTS_VOICE_NAME),
        )

    together_b, together_a = asyncio.run(both())
    assert np.array_equal(together_a.pcm, first_a)
    assert np.array_equal(together_b.pcm, first_b)


def test_voice_message_embedding(two_voices: Server, voice_folder: tuple[Path, Path, Path]) -> None:
    """A `Voice` message carrying the other voice's embedding speaks exactly like that voice;
    an embedding of the wrong shape gets a clear error."""
    import msgpack
    import numpy as np
    import websockets
    from safetensors.torch import load_file

    words = "a short sentence to compare".split()
    by_name = asyncio.run(speak(base(two_voices), words, voice="other_voice")).pcm
    other_file = voice_folder[2]
    embedding = load_file(str(other_file))["speaker_wavs"]

    async def run(values: list[float], shape: list[int]) -> tuple[np.ndarray, list[str]]:
        url = f"{base(two_voices)}/api/tts_streaming?format=PcmMessagePack"
        frames, errors = [], []
        async with websockets.connect(url, additional_headers={"kyutai-api-key": API_KEY}) as ws:
            await ws.send(msgpack.packb({"type": "Voice", "embeddings": values, "shape": shape}))
            for w in words:
                await ws.send(msgpack.packb({"type": "Text", "text": w}))
            await ws.send(msgpack.packb({"type": "Eos"}))
            async for raw in ws:
                msg = msgpack.unpackb(raw)
                if msg["type"] == "Audio":
                    frames.append(np.asarray(msg["pcm"], np.float32))
                elif msg["type"] == "Error":
                    errors.append(msg["message"])
        pcm = np.concatenate(frames) if frames else np.zeros(0, np.float32)
        return pcm, errors

    values = embedding.flatten().tolist()
    pcm, errors = asyncio.run(run(values, list(embedding.shape)))
    assert not errors and np.array_equal(pcm, by_name)
    _, errors = asyncio.run(run(values[:-1], [1, len(values) - 1]))
    assert len(errors) == 1 and "this model takes shape" in errors[0]


def test_openai_speech_and_speed(two_voices: Server) -> None:
    """`/v1/audio/speech` on a Kyutai voice; `speed` stretches the (greedy, so repeatable)
    output to 1/speed of its length."""
    from openai import OpenAI

    client = OpenAI(base_url=two_voices.http + "/v1", api_key=API_KEY)

    def samples(speed: float) -> int:
        data = client.audio.speech.create(
            model="tts-1",
            voice=TTS_VOICE_NAME,
            input="one two three four",
            speed=speed,
            response_format="pcm",
        ).read()
        return len(data) // 2

    normal = samples(1.0)
    assert normal >= 1920 and normal % 1920 == 0
    assert samples(1.0) == normal
    assert abs(samples(2.0) / normal - 0.5) < 0.02
