"""`parley serve --ray --replicas 2`: a local Ray instance, two replicas of the real app with
2 STT and 2 TTS slots each, behind Ray Serve's proxy on one port, driven by real clients
(Parley's Kyutai-style streaming client, websockets, the openai SDK). Skipped without the
`ray` extra. One Ray instance for the module; its processes are gone when the module ends."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import psutil
import pytest

pytest.importorskip("ray.serve")

from parley.bench.wer import wer  # noqa: E402
from parley.client.asr import connect, transcribe_stream  # noqa: E402
from parley.protocol import asr  # noqa: E402
from parley.protocol.common import ErrorMessage  # noqa: E402
from parley.server.ray_router import ADMISSION_GRACE_S  # noqa: E402
from parley.server.ray_serve import ROUTING_STATS_PERIOD_S  # noqa: E402
from tests.conftest import API_KEY, EVAL_DIR, Server, load_clip, start_server  # noqa: E402

SLOTS_PER_REPLICA = 2
CLIP = EVAL_DIR / "faster_whisper/jfk.flac"
REFERENCE = "and so my fellow americans ask not what your country can do for you ask what you can do for your country"  # noqa: E501
DRAIN_TIMEOUT_S = 20  # longer than the clip: a draining replica lets it finish
REPLICA_PROCESS = "ServeReplica:parley:Parley"  # Ray names a replica's worker process so


def _config(model_dir: str) -> str:
    return f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "WhisperStreaming"
path = "/api/asr-streaming"
batch_size = {SLOTS_PER_REPLICA}
model = "{model_dir}"
cpu_threads = 1
[modules.tts]
type = "PiperTts"
path = "/api/tts_streaming"
batch_size = {SLOTS_PER_REPLICA}
[ray]
num_cpus = 0.5
drain_timeout_s = {DRAIN_TIMEOUT_S}
"""


def _descendants(pid: int) -> list[psutil.Process]:
    try:
        return list(psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return []


def _replica_processes(server: Server) -> list[psutil.Process]:
    found = []
    for p in _descendants(server.process.pid):
        try:
            if REPLICA_PROCESS in " ".join(p.cmdline()):
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


def _readyz(server: Server) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(server.http + "/readyz?module=asr", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _wait_replicas(server: Server, timeout_s: float) -> set[str]:
    """Until the proxy has sent /readyz to two replicas and both answered 200: both are
    alive and warm, and the proxy's router knows them. Their names."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, body = _readyz(server)
        if status == 200 and body.get("replica"):
            seen.add(str(body["replica"]))
            if len(seen) == 2:
                return seen
        time.sleep(0.1)
    raise AssertionError(f"only replicas {seen} answered within {timeout_s} s")


@pytest.fixture(scope="module")
def ray_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from tests.conftest import packaged_model_dir

    tmp = tmp_path_factory.mktemp("ray")
    # Ray's own files: a short path, as its unix sockets live under it (107-byte limit).
    ray_tmp = tempfile.mkdtemp(prefix="pr-")
    srv = start_server(
        tmp,
        _config(packaged_model_dir()),
        ["--ray", "--replicas", "2"],
        env={"RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    spawned: list[psutil.Process] = []
    try:
        _wait_replicas(srv, 120)
        spawned = _descendants(srv.process.pid)
        yield srv
    finally:
        spawned += _descendants(srv.process.pid)
        if srv.process.poll() is None:
            srv.process.send_signal(signal.SIGTERM)  # serve.shutdown, then ray.shutdown
        try:
            srv.process.wait(timeout=60)
        except Exception:
            srv.process.kill()
        _, alive = psutil.wait_procs(spawned, timeout=20)
        for p in alive:  # only what this server started, by pid
            p.kill()
        shutil.rmtree(ray_tmp, ignore_errors=True)
        assert not alive, f"Ray processes left after shutdown: {alive}"


def _alone_text(server: Server) -> str:
    return asyncio.run(transcribe_stream(server.ws, load_clip(CLIP), realtime=False)).text


def test_four_sessions_on_two_replicas_fifth_refused_tts_apart(ray_server: Server) -> None:
    """Two TTS sessions held, then 4 STT sessions: all get Ready (each replica has only 2 STT
    slots, so they sit on both), the 5th is refused, and all 4 transcribe the clip."""
    pcm = load_clip(CLIP)

    async def run() -> list[str]:
        tts_url = ray_server.http.replace("http", "ws") + "/api/tts_streaming"
        tts = [await connect(tts_url, API_KEY) for _ in range(2)]
        held = [await connect(ray_server.ws, API_KEY) for _ in range(4)]
        for ws in held:
            assert isinstance(asr.decode_server(await ws.recv()), asr.Ready)
        extra = await connect(ray_server.ws, API_KEY)
        assert asr.decode_server(await extra.recv()) == ErrorMessage("no free channels")
        await extra.close()
        status, body = await asyncio.to_thread(_readyz, ray_server)
        assert status == 503 and body["status"] == "full"
        for ws in held:
            await ws.close()
        for ws in tts:
            await ws.close()
        # Freed slots count again once the replicas' next reports reach the router.
        await asyncio.sleep(ADMISSION_GRACE_S + 2 * ROUTING_STATS_PERIOD_S)
        return list(
            await asyncio.gather(
                *(transcribe_stream(ray_server.ws, pcm, realtime=False) for _ in range(4))
            )
        )

    results = asyncio.run(run())
    for res in results:
        assert wer([REFERENCE], [res.text]) <= 0.1, res.text


def test_openai_sdk_through_the_proxy(ray_server: Server) -> None:
    """The openai SDK unchanged: streamed speech (a streaming response through Ray's proxy),
    then that speech transcribed by POST; both round trips through the replicas."""
    import io
    import wave

    import numpy as np
    from openai import OpenAI

    client = OpenAI(base_url=ray_server.http + "/v1", api_key=API_KEY, max_retries=0)
    text = "Please water the plants by the kitchen window on Tuesday."
    chunks = []
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm"
    ) as response:
        assert response.headers["content-type"].startswith("audio/pcm")
        chunks = list(response.iter_bytes())
    pcm = b"".join(chunks)
    assert len(chunks) > 1 and len(pcm) / 2 / 24_000 > 1.5  # streamed, seconds of speech
    assert np.abs(np.frombuffer(pcm, "<i2")).max() > 1000  # not silence
    wav = io.BytesIO()
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(24_000)
        w.writeframes(pcm)
    heard = client.audio.transcriptions.create(
        model="whisper-1", file=("speech.wav", wav.getvalue(), "audio/wav")
    )
    assert wer([text], [heard.text]) <= 0.2, heard.text


def test_metrics_through_the_proxy_name_their_replica(ray_server: Server) -> None:
    with urllib.request.urlopen(ray_server.http + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert 'asr_open_channels{module="asr",replica="' in text


def test_a_killed_replica_ends_only_its_sessions(ray_server: Server) -> None:
    """Two real-time sessions, one per replica (the router puts the second on the emptier
    replica); one replica's process is killed mid-stream: its session ends at once with an
    error or a close, the other finishes as accurately as alone, Ray starts a new
    replica, and a new session works."""
    alone = _alone_text(ray_server)
    assert wer([REFERENCE], [alone]) <= 0.1, alone
    pcm = load_clip(CLIP)
    victim = _replica_processes(ray_server)[0]
    # The replica that served `alone` reports its slot free again: until then the router
    # counts it as taken, and both sessions could tie onto the other replica.
    time.sleep(ADMISSION_GRACE_S + 2 * ROUTING_STATS_PERIOD_S)

    async def session() -> str | BaseException:
        try:
            return (await transcribe_stream(ray_server.ws, pcm)).text
        except Exception as exc:  # the killed replica's session
            return exc

    async def run() -> tuple[list[str | BaseException], float]:
        tasks = [asyncio.create_task(session()) for _ in range(2)]
        await asyncio.sleep(4.0)  # both streaming, a third of the clip in
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        ended_after_s = time.monotonic() - killed_at
        assert len(done) == 1, "both sessions ended at once"
        return list(await asyncio.gather(*tasks)), ended_after_s

    outcomes, ended_after_s = asyncio.run(run())
    texts = [o for o in outcomes if isinstance(o, str)]
    errors = [o for o in outcomes if not isinstance(o, str)]
    assert len(texts) == 1 and len(errors) == 1, outcomes
    # As accurate as alone (real time on a machine busy starting the replacement may change
    # a word or two; the killed stream's audio never reaches this replica).
    assert wer([REFERENCE], texts) <= wer([REFERENCE], [alone]) + 0.1, (alone, texts)
    assert ended_after_s < 5.0  # the dead replica's socket is not left hanging
    _wait_replicas(ray_server, 120)  # the survivor and the replacement (the dead answer no 200)
    again = _alone_text(ray_server)
    assert wer([REFERENCE], [again]) <= 0.1, again


def test_stopping_drains_live_sessions(ray_server: Server) -> None:
    """SIGTERM to `parley serve --ray` removes the application: a replica being removed
    finishes the session it has (up to drain_timeout_s) instead of cutting it, then the
    server exits cleanly. Last in the module: it ends the server."""
    pcm = load_clip(CLIP)

    async def run() -> str:
        task = asyncio.create_task(transcribe_stream(ray_server.ws, pcm))
        await asyncio.sleep(3.0)  # mid-clip
        ray_server.process.send_signal(signal.SIGTERM)
        return (await task).text

    text = asyncio.run(run())
    assert wer([REFERENCE], [text]) <= 0.15, text
    assert ray_server.process.wait(timeout=DRAIN_TIMEOUT_S + 30) == 0
