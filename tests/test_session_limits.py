"""Settings that guard sessions, on a real server with short limits: `idle_timeout_s` closes a
socket that sends nothing (with one clear error, slot freed), `token_socket_auth = true` makes
seed 004's socket ask for a key like every other route."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import websockets

from parley.client.errors import Unauthorized
from parley.client.tokens import speak_tokens
from parley.server.http_protocol import HEADERS_TIMEOUT_S
from tests.conftest import API_KEY, Server, packaged_model_dir, serving

IDLE_S = 3.0  # long enough for a short first phrase on a loaded machine: idle = quiet both ways


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(
        tmp_path_factory.mktemp("strict"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "WhisperStreaming"
batch_size = 2
model = "{packaged_model_dir()}"
idle_timeout_s = {IDLE_S}

[modules.tts]
type = "PiperTts"
batch_size = 2
idle_timeout_s = {IDLE_S}
token_socket_auth = true
""",
    )


def used_slots(srv: Server) -> dict[str, int]:
    return {m["name"]: m["used_slots"] for m in srv.modules_info()}


async def silent_session(srv: Server, path: str, sends: list[bytes]) -> tuple[list[Any], float]:
    """Sends `sends`, then nothing; returns what came back and the seconds until the close."""
    got: list[Any] = []
    url = f"ws://127.0.0.1:{srv.port}{path}"
    async with websockets.connect(url, additional_headers={"kyutai-api-key": API_KEY}) as ws:
        for item in sends:
            await ws.send(item)
        start = time.monotonic()
        try:
            async for raw in ws:
                got.append(msgpack.unpackb(raw))
        except websockets.ConnectionClosed:
            pass
        return got, time.monotonic() - start


@pytest.mark.parametrize(
    ("path", "sends", "reason"),
    [
        ("/api/asr-streaming", [], "no data"),
        ("/api/tts_streaming?format=PcmMessagePack", [], "no text"),
        (  # text sent, but no Eos: the stream would otherwise hold its slot for ever
            "/api/tts_streaming?format=PcmMessagePack",
            [msgpack.packb({"type": "Text", "text": "Hello"})],
            "no text",
        ),
    ],
)
def test_idle_socket_gets_one_error_and_frees_its_slot(
    strict_server: Server, path: str, sends: list[bytes], reason: str
) -> None:
    got, waited_s = asyncio.run(asyncio.wait_for(silent_session(strict_server, path, sends), 30))
    errors = [m for m in got if m.get("type") == "Error"]
    assert len(errors) == 1 and errors[0] == got[-1], got
    assert reason in errors[0]["message"] and f"{IDLE_S:g} s" in errors[0]["message"]
    assert waited_s > IDLE_S - 0.5  # the client starts its clock a little after the server
    deadline = time.monotonic() + 2.0
    while any(used_slots(strict_server).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(used_slots(strict_server).values())


def test_token_socket_asks_for_a_key_when_configured(strict_server: Server) -> None:
    url = f"ws://127.0.0.1:{strict_server.port}"
    for key in (None, "wrong"):
        with pytest.raises(Unauthorized):
            asyncio.run(speak_tokens(["Hi."], url=url, api_key=key))
    speech = asyncio.run(speak_tokens(["Hello", " there."], url=url, api_key=API_KEY))
    assert speech.frames and len(speech.pcm) > 0.3 * speech.sample_rate


def test_token_socket_idle_closes_and_frees_its_slot(strict_server: Server) -> None:
    """Seed 004's socket asks for no key by default: without an idle timeout, silent clients
    could hold every TTS slot for ever (issue 11, item 1)."""

    async def silent() -> tuple[list[str | bytes], float]:
        url = f"ws://127.0.0.1:{strict_server.port}/ws/stream"
        got: list[str | bytes] = []
        async with websockets.connect(url, additional_headers={"kyutai-api-key": API_KEY}) as ws:
            await ws.send('{"token": "Hello"}')  # a word begun, never ended: no audio comes
            start = time.monotonic()
            try:
                async for raw in ws:
                    got.append(raw)
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1008
            return got, time.monotonic() - start

    got, waited_s = asyncio.run(asyncio.wait_for(silent(), 30))
    assert len(got) == 1 and isinstance(got[0], str)
    assert f"no tokens for {IDLE_S:g} s" in got[0]
    assert waited_s > IDLE_S - 0.5
    deadline = time.monotonic() + 2.0
    while any(used_slots(strict_server).values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(used_slots(strict_server).values())


def test_idle_and_half_sent_connections_are_closed(strict_server: Server) -> None:
    """Connections that never finish a request's headers (issue 11, item 6: 1,200 of them held
    a server at its file limit) are closed after HEADERS_TIMEOUT_S; a normal client is served
    meanwhile, and a keep-alive connection's next request gets the same deadline."""
    silent = [socket.create_connection(("127.0.0.1", strict_server.port)) for _ in range(200)]
    half = socket.create_connection(("127.0.0.1", strict_server.port))
    half.sendall(b"GET /api/build_info HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
    keep = socket.create_connection(("127.0.0.1", strict_server.port))
    keep.sendall(b"GET /api/build_info HTTP/1.1\r\nHost: x\r\n\r\n")
    assert keep.recv(65536).startswith(b"HTTP/1.1 200")
    keep.sendall(b"GET /api/build_info HTTP/1.1\r\n")  # the next request, half sent
    assert strict_server.modules_info()  # served while the others hang
    for s in (*silent, half, keep):
        s.settimeout(HEADERS_TIMEOUT_S + 15)  # a server that never closes fails here
        try:
            while s.recv(65536):
                pass  # closed: recv gives b""
        except ConnectionResetError:
            pass  # closed with data unread: also closed
        s.close()


def test_client_faults_leave_no_errors_in_the_log(strict_server: Server) -> None:
    """A refused key and an invalid UTF-8 text frame are the client's faults: one INFO line
    each, not an ERROR with a traceback (issue 11, item 8)."""

    async def faults() -> None:
        url = f"ws://127.0.0.1:{strict_server.port}/api/tts_streaming?format=PcmMessagePack"
        with pytest.raises(websockets.InvalidStatus):
            async with websockets.connect(url, additional_headers={"kyutai-api-key": "wrong"}):
                pass
        async with websockets.connect(url, additional_headers={"kyutai-api-key": API_KEY}) as ws:
            await ws.recv()  # Ready
            ws.protocol.send_text(b"\xff\xfe")  # the client library would refuse to send this
            ws.send_data()
            with pytest.raises(websockets.ConnectionClosedError) as closed:
                await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007

    before = strict_server.log_path.read_text()
    asyncio.run(asyncio.wait_for(faults(), 30))
    time.sleep(0.5)
    added = strict_server.log_path.read_text()[len(before) :]
    assert "401" in added and "invalid UTF-8" in added
    assert "ERROR" not in added and "Traceback" not in added, added
