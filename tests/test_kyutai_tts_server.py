"""Kyutai TTS (`KyutaiTts`) over the real server, with a tiny random checkpoint written here.

The model is random, so its audio is noise-like; what is tested is the machinery on the moshi
TTS protocol: `Ready`, 1920-sample frames at 24 kHz, a `Text` with times for each word sent,
`Eos` ending the stream, unknown voices refused, two sessions at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from parley.client.tts import ServerError, SpeechResult, speak
from tests.conftest import API_KEY, Server, serving
from tests.kyutai_checkpoints import (
    TTS_VOICE_NAME,
    LocalSlot,
    recording_margins,
    tiny_tts_voice_path,
    write_tiny_tts_checkpoint,
)

PCM_TOLERANCE = 1e-4
"""Same codes, another batch composition, thread count or CPU: the decoded samples (~0.1 rms)
move by up to ~3e-7; another voice or a single other code moves them by ~0.01 to 0.4."""


def same_audio(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=0.0, atol=PCM_TOLERANCE))


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
    gives what a fresh session with that voice gives (same frames, up to float noise)."""
    words = "a short sentence to compare".split()

    def say(voice: str) -> np.ndarray:
        return asyncio.run(speak(base(two_voices), words, voice=voice)).pcm

    first_a, first_b = say(TTS_VOICE_NAME), say("other_voice")
    assert first_a.shape == first_b.shape
    assert not np.allclose(first_a, first_b, atol=0.01)  # far beyond PCM_TOLERANCE
    assert same_audio(say(TTS_VOICE_NAME), first_a)  # the slot switched back cleanly

    async def both() -> tuple[SpeechResult, SpeechResult]:
        return await asyncio.gather(
            speak(base(two_voices), words, voice="other_voice"),
            speak(base(two_voices), words, voice=TTS_VOICE_NAME),
        )

    together_b, together_a = asyncio.run(both())
    assert same_audio(together_a.pcm, first_a)
    assert same_audio(together_b.pcm, first_b)


def speak_locally(
    voice_folder: tuple[Path, Path, Path],
    sessions: list[tuple[str, list[str]]],
    batch_size: int,
    cpu_threads: int = 1,
) -> list[np.ndarray]:
    """The `two_voices` server's backend in this process: each (voice, words) session in its
    own slot, all words at once; the audio of each."""
    import torch
    from moshi.utils.compile import no_compile

    from parley.backends.kyutai.checkpoint import find_files
    from parley.backends.kyutai.tts import KyutaiTtsBackend, find_voices
    from parley.engine.speech import AudioFrame, EndOfText, SpeechConfig, SpeechEnd, TextPiece

    checkpoint, voices_dir, _ = voice_folder
    voices, default = find_voices(TTS_VOICE_NAME, str(voices_dir))
    threads = torch.get_num_threads()
    try:
        with no_compile():
            files = find_files({"hf_repo": str(checkpoint)})
            backend = KyutaiTtsBackend(
                files, voices, default, batch_size, n_q=8, temp=0.0, cpu_threads=cpu_threads
            )
            slots = []
            for index, (voice, words) in enumerate(sessions):
                texts = [TextPiece(word, whole_words=True) for word in words]
                slots.append(LocalSlot(index, [SpeechConfig(voice), *texts, EndOfText()]))
                backend.attach(slots[-1])
            for _ in range(10_000):
                if all(any(isinstance(m, SpeechEnd) for m in s.out) for s in slots):
                    break
                backend.step(slots)
    finally:
        torch.set_num_threads(threads)  # the backend sets it for the whole process
    return [np.concatenate([m.pcm for m in s.out if isinstance(m, AudioFrame)]) for s in slots]


def test_audio_does_not_hang_on_float_noise(
    two_voices: Server, voice_folder: tuple[Path, Path, Path]
) -> None:
    """The comparisons of this file hold on any CPU: no greedy token of their sessions is near
    a tie, and what another CPU does to the floats, simulated (alone in a batch of 1, beside
    others in a batch of 3, on 2 threads), gives the same frames up to float noise."""
    words = "a short sentence to compare".split()
    sessions = [(TTS_VOICE_NAME, words), ("other_voice", words)]
    with recording_margins() as margins:
        reference = speak_locally(voice_folder, sessions, batch_size=2)
        speak_locally(voice_folder, [(TTS_VOICE_NAME, "one two three four".split())], 1)
    margins.assert_wide()
    served = asyncio.run(speak(base(two_voices), words, voice=TTS_VOICE_NAME)).pcm
    assert same_audio(served, reference[0])  # the server makes the same decisions
    assert same_audio(speak_locally(voice_folder, sessions[:1], batch_size=1)[0], reference[0])
    among = speak_locally(voice_folder, [("other_voice", ["hello"]), *sessions], batch_size=3)
    assert all(map(same_audio, among[1:], reference))
    threads = speak_locally(voice_folder, sessions, batch_size=2, cpu_threads=2)
    assert all(map(same_audio, threads, reference))


def test_voice_message_embedding(two_voices: Server, voice_folder: tuple[Path, Path, Path]) -> None:
    """A `Voice` message carrying the other voice's embedding speaks exactly like that voice;
    an embedding of the wrong shape gets a clear error."""
    import msgpack
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
    assert not errors and same_audio(pcm, by_name)
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
