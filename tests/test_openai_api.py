"""The official `openai` SDK against the real server (Piper + tiny.en), every format decoded."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import av
import numpy as np
import openai
import pytest
from openai import OpenAI

from parley.audio.decode import decode_file
from parley.bench.eval_clips import english_clips
from parley.bench.offline import offline_transcripts
from parley.bench.wer import wer
from tests.conftest import API_KEY, EVAL_DIR, Server, packaged_model_dir, serving
from tests.test_tts_server import transcribe, whisper  # noqa: F401 - fixture

TEXT = (
    "Please remember to water the plants on Tuesday. The ones by the kitchen window need more "
    "light than the others, so move them closer to the glass if the weather stays cloudy."
)
MORE_TEXT = "The watering can is in the shed. Fill it halfway, and do not forget the ferns."
CLIPS = [c for c in english_clips(EVAL_DIR) if c.duration_s <= 12.0][:5]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(
        tmp_path_factory.mktemp("openai"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "WhisperStreaming"
batch_size = 2
model = "{packaged_model_dir()}"
post_timeout_s = 2.0
[modules.tts]
type = "PiperTts"
batch_size = 2
voice_aliases = {{ nova = "en_US-joe-medium", "unmute-prod-website/*" = "en_US-joe-medium" }}
post_timeout_s = 2.0
""",
    )


@pytest.fixture(scope="module")
def client(api_server: Server) -> OpenAI:
    return OpenAI(base_url=api_server.http + "/v1", api_key=API_KEY, max_retries=0)


def decode_any(data: bytes) -> tuple[np.ndarray, str]:
    """Any container FFmpeg reads -> 24 kHz mono float32, and the codec name."""
    with av.open(io.BytesIO(data)) as container:
        codec = container.streams.audio[0].codec_context.name
    return decode_file(data, 24_000), codec


def test_seed_002_streaming_call(client: OpenAI, whisper: Any) -> None:  # noqa: F811
    """Seed 002's exact call: pcm streamed, iter_bytes; the first bytes come before the end."""
    text = f"{TEXT} {MORE_TEXT}"
    chunks: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        data = b""
        for chunk in response.iter_bytes():
            chunks.append((time.monotonic() - t0, len(chunk)))
            data += chunk
    pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    duration_s = len(pcm) / 24_000
    first_s, last_s = chunks[0][0], chunks[-1][0]
    assert duration_s > 10.0
    # Streamed, not sent in one piece at the end: the first sentence's audio comes when a
    # fraction of the text is synthesised (a ratio, whatever the machine's speed).
    print(f"first audio at {first_s:.3f} s, last at {last_s:.3f} s")
    assert first_s < 0.5 * last_s, chunks[:3]
    assert wer([text], [transcribe(whisper, pcm)]) <= 0.15


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_response_format(client: OpenAI, whisper: Any, fmt: str) -> None:  # noqa: F811
    text = "The library opens at nine, and closes late on Thursdays."
    response = client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="en_US-joe-medium", input=text, response_format=fmt
    )
    data = response.read()
    if fmt == "pcm":
        pcm = np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768
    else:
        pcm, codec = decode_any(data)
        expected = {"mp3": "mp3", "opus": "opus", "aac": "aac", "flac": "flac", "wav": "pcm_s16le"}
        assert codec.startswith(expected[fmt]), codec
    assert 2.0 < len(pcm) / 24_000 < 8.0
    assert wer([text], [transcribe(whisper, pcm)]) <= 0.2


def test_speed_changes_duration_not_pitch(client: OpenAI, whisper: Any) -> None:  # noqa: F811
    from tests.test_tts_server import median_f0_hz

    def say(speed: float) -> np.ndarray:
        data = client.audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT, response_format="pcm", speed=speed
        ).read()
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768

    normal, fast, slow = say(1.0), say(2.0), say(0.5)
    # Separate syntheses differ by a few percent (Piper samples its durations).
    assert 0.45 < len(fast) / len(normal) < 0.55
    assert 1.8 < len(slow) / len(normal) < 2.2
    for changed in (fast, slow):
        assert 0.85 < median_f0_hz(changed) / median_f0_hz(normal) < 1.18
    assert wer([TEXT], [transcribe(whisper, fast)]) <= 0.25


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav"])
def test_speed_in_every_encoded_format(client: OpenAI, whisper: Any, fmt: str) -> None:  # noqa: F811
    """The stretch hands the encoders chunks of any size, empty ones included."""
    text = "The library opens at nine, and closes late on Thursdays."
    data = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format=fmt, speed=1.5
    ).read()
    pcm = decode_file(data, 24_000)
    assert 1.0 < len(pcm) / 24_000 < 4.0
    assert wer([text], [transcribe(whisper, pcm)]) <= 0.2


def test_speech_sse(api_server: Server) -> None:
    body = json.dumps(
        {
            "model": "tts-1",
            "voice": "nova",
            "input": "One, two, three.",
            "response_format": "pcm",
            "stream_format": "sse",
        }
    ).encode()
    req = urllib.request.Request(
        api_server.http + "/v1/audio/speech",
        data=body,
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    events = []
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.headers["Content-Type"].startswith("text/event-stream")
        for line in r.read().decode().splitlines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "speech.audio.done" and set(kinds[:-1]) == {"speech.audio.delta"}
    audio = b"".join(base64.b64decode(e["audio"]) for e in events[:-1])
    assert len(audio) // 2 > 24_000  # over a second of 16-bit samples


@pytest.fixture(scope="module")
def offline() -> dict[str, str]:
    return dict(
        zip([c.id for c in CLIPS], offline_transcripts([c.path for c in CLIPS]), strict=True)
    )


def test_transcriptions_verbose_json_words(client: OpenAI, offline: dict[str, str]) -> None:
    hyps = []
    for clip in CLIPS:
        with clip.path.open("rb") as f:
            result = client.audio.transcriptions.create(
                model="whisper-1",
                file=f,
                response_format="verbose_json",
                timestamp_granularities=["word", "segment"],
            )
        hyps.append(result.text)
        assert result.words and result.segments
        starts = [w.start for w in result.words]
        assert starts == sorted(starts)
        assert all(0 <= w.start <= w.end <= clip.duration_s + 0.5 for w in result.words)
        assert " ".join(w.word for w in result.words) == result.text
        assert abs(result.duration - clip.duration_s) < 0.1
    refs = [c.reference for c in CLIPS]
    ours, baseline = wer(refs, hyps), wer(refs, [offline[c.id] for c in CLIPS])
    assert ours <= baseline + 0.03, (ours, baseline)


def test_transcription_formats(client: OpenAI) -> None:
    clip = CLIPS[0]
    data = clip.path.read_bytes()
    plain = client.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", data), response_format="text"
    )
    assert isinstance(plain, str) and len(plain.split()) >= 3
    srt = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", data), response_format="srt"
    )
    assert "-->" in srt and srt.strip().startswith("1\n")
    vtt = client.audio.transcriptions.create(
        model="whisper-1", file=("a.wav", data), response_format="vtt"
    )
    assert vtt.startswith("WEBVTT") and "-->" in vtt
    js = client.audio.transcriptions.create(model="whisper-1", file=("a.wav", data))
    # Each request decodes again, and where the recogniser's windows fall depends on thread
    # timing ("most," once came back as "most"): the same words, not the same characters.
    assert wer([plain], [js.text]) <= 0.1, (plain, js.text)


def test_transcription_stream_deltas_arrive_early(client: OpenAI) -> None:
    clip = max(CLIPS, key=lambda c: c.duration_s)
    arrivals: list[tuple[float, Any]] = []
    t0 = time.monotonic()
    with clip.path.open("rb") as f:
        stream = client.audio.transcriptions.create(model="whisper-1", file=f, stream=True)
        for event in stream:
            arrivals.append((time.monotonic() - t0, event))
    kinds = [e.type for _, e in arrivals]
    assert kinds[-1] == "transcript.text.done" and kinds.count("transcript.text.delta") >= 3
    done = arrivals[-1][1]
    assert "".join(e.delta for _, e in arrivals[:-1]) == done.text
    assert arrivals[0][0] < arrivals[-2][0]  # deltas spread out, not all at the end


def test_models_voices_openapi(api_server: Server, client: OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    for name in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1", "gpt-4o-transcribe"):
        assert name in ids
    req = urllib.request.Request(
        api_server.http + "/v1/audio/voices", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(req, timeout=5) as r:
        voices = {v["id"]: v for v in json.loads(r.read())["data"]}
    assert voices["en_US-joe-medium"]["default"] is True
    assert voices["alloy"]["alias_of"] == "en_US-joe-medium"
    with urllib.request.urlopen(api_server.http + "/openapi.json", timeout=5) as r:
        schema = json.loads(r.read())
    assert {"/v1/audio/speech", "/v1/audio/transcriptions"} <= set(schema["paths"])
    speech = schema["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]
    assert "tts-1" in speech["application/json"]["schema"]["properties"]["model"]["enum"]
    answers = schema["paths"]["/v1/audio/speech"]["post"]["responses"]
    assert (
        "audio/mpeg" in answers["200"]["content"] and "audio/mp3" not in answers["200"]["content"]
    )
    assert "401" in answers


def _speech_error(client: OpenAI, **kwargs: Any) -> openai.APIStatusError:
    args = {"model": "tts-1", "voice": "alloy", "input": "Hello.", **kwargs}
    with pytest.raises(openai.APIStatusError) as exc:
        client.audio.speech.create(**args).read()
    return exc.value


@pytest.mark.parametrize(
    "kwargs, status, needle",
    [
        ({"model": "tts-9"}, 400, "valid models: tts-1"),
        ({"voice": "gandalf"}, 400, "unknown voice"),
        ({"response_format": "ogg"}, 400, "response_format"),
        ({"input": ""}, 400, "must not be empty"),
        ({"speed": 9.0}, 400, "between 0.25 and 4.0"),
        ({"speed": 0.1}, 400, "between 0.25 and 4.0"),
        ({"input": "x" * 100_001}, 413, "input"),
    ],
)
def test_speech_bad_requests(
    client: OpenAI, kwargs: dict[str, Any], status: int, needle: str
) -> None:
    err = _speech_error(client, **kwargs)
    assert err.status_code == status
    body = err.response.json()["error"]
    assert needle in body["message"] and body["type"]


def test_missing_fields_and_auth(api_server: Server) -> None:
    def post(path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(api_server.http + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    status, body = post("/v1/audio/speech", b'{"model": "tts-1", "voice": "alloy"}', auth)
    assert status == 400 and body["error"]["param"] == "input"
    status, body = post("/v1/audio/speech", b"[1, 2]", auth)
    assert status == 400
    status, body = post("/v1/audio/speech", b"{}", {"Authorization": "Bearer nope"})
    assert status == 401 and body["error"]["type"] == "authentication_error"
    status, body = post(
        "/v1/audio/transcriptions",
        b"x",
        {"Content-Type": "text/plain", **{"Authorization": f"Bearer {API_KEY}"}},
    )
    assert status == 400


def test_transcription_bad_uploads(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="Invalid file format"):
        client.audio.transcriptions.create(model="whisper-1", file=("x.wav", b"garbage" * 100))
    with pytest.raises(openai.BadRequestError, match="valid models"):
        client.audio.transcriptions.create(model="whisper-9", file=("x.wav", b"garbage"))
    with pytest.raises(openai.BadRequestError, match="only 'en'"):
        data = CLIPS[0].path.read_bytes()
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", data), language="fr")
    with pytest.raises(openai.APIStatusError) as exc:
        big = b"\0" * (101 * 1024 * 1024)
        client.audio.transcriptions.create(model="whisper-1", file=("big.wav", big))
    assert exc.value.status_code == 413


def test_capacity_503_and_others_unaffected(api_server: Server, client: OpenAI) -> None:
    """Both TTS slots held by long requests: a third waits post_timeout_s, then 503."""
    results: list[int] = []

    def long_speech() -> None:
        data = client.audio.speech.create(
            model="tts-1", voice="alloy", input=TEXT * 6, response_format="pcm"
        ).read()
        results.append(len(data))

    holders = [threading.Thread(target=long_speech) for _ in range(2)]
    for t in holders:
        t.start()
    time.sleep(0.5)
    err = _speech_error(client)
    assert err.status_code == 503 and "busy" in err.response.json()["error"]["message"]
    for t in holders:
        t.join(timeout=120)
    assert len(results) == 2 and min(results) > 24_000 * 2 * 20


def test_names_other_clients_send(client: OpenAI, whisper: Any) -> None:  # noqa: F811
    """pipecat's default STT model, VoiceMode's voice and language, dated model names."""
    speech = client.audio.speech.create(
        model="gpt-4o-mini-tts-2025-12-15",
        voice="af_sky",
        input="Good morning.",
        response_format="pcm",
    ).read()
    pcm = np.frombuffer(speech, "<i2").astype(np.float32) / 32768
    assert wer(["good morning"], [transcribe(whisper, pcm)]) <= 0.5
    clip = CLIPS[0]
    for model in ("gpt-transcribe", "gpt-realtime-whisper", "gpt-4o-transcribe-2025-03-20"):
        for language in ("auto", ""):
            text = client.audio.transcriptions.create(
                model=model, file=("a.wav", clip.path.read_bytes()), language=language
            ).text
            assert wer([clip.reference], [text]) <= 0.3, (model, text)
    for bad in ("gpt-transcribe-2025", "gpt-5-transcribe"):
        with pytest.raises(openai.BadRequestError, match="valid models"):
            client.audio.transcriptions.create(model=bad, file=("a.wav", b"x"))
    voices = {v["id"]: v for v in client.get("/audio/voices", cast_to=object)["data"]}  # type: ignore[index]
    assert voices["af_sky"]["alias_of"] == "en_US-joe-medium"


def test_voice_aliases_on_the_moshi_routes(api_server: Server) -> None:
    """Unmute sends Kyutai voice paths: a `voice_aliases` pattern maps them on the moshi TTS
    socket and POSTs as on the OpenAI route; a name nothing maps is still an error."""
    import asyncio
    import contextlib

    import msgpack
    import websockets

    voice = "unmute-prod-website/p329_022.wav"

    async def speak(name: str) -> list[dict[str, Any]]:
        url = (
            f"ws://127.0.0.1:{api_server.port}/api/tts_streaming?format=PcmMessagePack"
            f"&voice={name}&auth_id={API_KEY}"
        )
        got = []
        async with websockets.connect(url) as ws:
            with contextlib.suppress(websockets.ConnectionClosed):  # refused: closed at once
                await ws.send(msgpack.packb({"type": "Text", "text": "Hello"}))
                await ws.send(msgpack.packb({"type": "Eos"}))
            async for message in ws:
                got.append(msgpack.unpackb(message))
        return got

    got = asyncio.run(speak(voice))
    assert got[0]["type"] == "Ready" and any(m["type"] == "Audio" for m in got)
    got = asyncio.run(speak("somebody-else/p1.wav"))
    assert got[-1]["type"] == "Error" and "unknown voice" in got[-1]["message"]
    req = urllib.request.Request(
        api_server.http + "/api/tts",
        data=json.dumps({"text": ["Hello."], "voice": voice}).encode(),
        headers={"kyutai-api-key": API_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.headers["content-type"] == "audio/wav" and len(r.read()) > 24_000


def test_unknown_websocket_path_is_404(api_server: Server) -> None:
    """Not 403, which reads as a bad key (LiveKit tries /v1/realtime)."""
    import asyncio

    import websockets

    async def status(path: str) -> int:
        with pytest.raises(websockets.InvalidStatus) as exc:
            async with websockets.connect(f"ws://127.0.0.1:{api_server.port}{path}"):
                pass
        return exc.value.response.status_code

    assert asyncio.run(status("/v1/nothing-here")) == 404
    assert asyncio.run(status("/")) == 404
