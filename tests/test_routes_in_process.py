"""Every socket route in-process (Starlette's TestClient, no subprocess), on fake backends
(named as such) that answer at once: admission, refusals, close codes, and the slot freed on
every path out. The real-server tests cover the same routes end to end with real models."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

import msgpack
import numpy as np
import pytest
from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession
from starlette.websockets import WebSocketDisconnect

from parley.config import Config, ModuleConfig
from parley.engine.messages import Ready
from parley.engine.module import Module, ModuleInfo
from parley.engine.recognition import Audio, Marker, RecognitionBackend, Step, Word
from parley.engine.slots import Slot
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    Flush,
    PhraseEnd,
    SpeechBackend,
    SpeechConfig,
    SpeechEnd,
    SpokenWord,
    TextPiece,
)
from parley.server.app import create_app

FAULT_MARKER_ID = 666  # fault injection: answered with a Word no codec can encode


class FakeRecognitionBackend(RecognitionBackend):
    """A `Word` per Audio message, a `Step` per message, markers echoed at once."""

    def attach(self, slot: Slot) -> None:
        slot.emit(Ready())

    def detach(self, index: int) -> None:
        pass

    def step(self, slots: Sequence[Slot]) -> bool:
        for slot in slots:
            for i, item in enumerate(slot.take_inputs()):
                if isinstance(item, Audio):
                    slot.emit(Word(f"w{item.pcm.size}", 0.0))
                    slot.emit(Step(i, [0.0, 0.0, 0.0], 0))
                elif isinstance(item, Marker) and item.id == FAULT_MARKER_ID:
                    slot.emit(Word(object(), 0.0))  # type: ignore[arg-type]
                elif isinstance(item, Marker):
                    slot.emit(Marker(item.id))
        return False


class FakeSpeechBackend(SpeechBackend):
    """Each word: its `SpokenWord` and one frame; a phrase per `Flush` when asked for."""

    marks_phrases = True

    def __init__(self) -> None:
        self.voices = ["fake"]
        self.default_voice = "fake"
        self.configs: dict[int, SpeechConfig] = {}

    def attach(self, slot: Slot) -> None:
        pass

    def detach(self, index: int) -> None:
        self.configs.pop(index, None)

    def step(self, slots: Sequence[Slot]) -> bool:
        for slot in slots:
            for item in slot.take_inputs():
                if isinstance(item, SpeechConfig):
                    self.configs[slot.index] = item
                elif isinstance(item, TextPiece):
                    slot.emit(SpokenWord(item.text.strip(), 0.0, 0.08))
                    slot.emit(AudioFrame(np.full(1920, 0.1, np.float32)))
                elif isinstance(item, Flush) and self.configs[slot.index].phrase_ends:
                    slot.emit(PhraseEnd())
                elif isinstance(item, EndOfText):
                    slot.emit(SpeechEnd())
        return False


def modules(batch: int) -> list[Module]:
    return [
        Module(ModuleInfo("asr", "FakeStt", "/api/asr-streaming", batch), FakeRecognitionBackend()),
        Module(
            ModuleInfo(
                "tts", "FakeTts", "/api/tts_streaming", batch, {"token_socket_path": "/ws/stream"}
            ),
            FakeSpeechBackend(),
        ),
    ]


def app_client(keys: list[str] | None, batch: int = 1) -> tuple[TestClient, list[Module]]:
    mods = modules(batch)
    config = Config(
        authorized_ids=keys,
        modules=[ModuleConfig(m.info.name, m.info.kind, m.info.path, batch) for m in mods],
    )
    return TestClient(create_app(config, mods)), mods


@pytest.fixture
def open_app() -> Iterator[tuple[TestClient, list[Module]]]:
    client, mods = app_client(None)
    with client:
        yield client, mods


def end_with_error(ws: WebSocketTestSession, frame: bytes | str, code: int) -> None:
    """Makes the server close the socket: TestClient cancels a server still running when the
    `with` block ends, so every session here is ended by the server."""
    if isinstance(frame, bytes):
        ws.send_bytes(frame)
    else:
        ws.send_text(frame)
    while (message := ws.receive())["type"] != "websocket.close":
        pass  # the protocol's error frame, if it has one
    assert message["code"] == code


def wait_free(mods: list[Module]) -> None:
    deadline = time.monotonic() + 2
    while any(m.used_slots for m in mods) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(m.used_slots for m in mods)


def test_keys_refused_before_upgrade_and_unknown_paths_404() -> None:
    client, _ = app_client(["k"])
    with client:
        for path in ("/api/asr-streaming", "/api/tts_streaming"):
            with pytest.raises(WebSocketDenialResponse) as denied:
                with client.websocket_connect(path):
                    pass
            assert denied.value.status_code == 401
        with client.websocket_connect("/api/asr-streaming?auth_id=k") as ws:
            assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
            end_with_error(ws, b"\xc1", 1003)
        # The token socket asks for no key unless token_socket_auth is set (seed 004).
        with client.websocket_connect("/ws/stream?ready=1") as ws:
            assert json.loads(ws.receive_text())["type"] == "ready"
            end_with_error(ws, "{", 1008)
        with pytest.raises(WebSocketDenialResponse) as missing:
            with client.websocket_connect("/v1/no-such-socket"):
                pass
        assert missing.value.status_code == 404


def test_asr_words_markers_and_full_house(open_app: tuple[TestClient, list[Module]]) -> None:
    client, mods = open_app
    with client.websocket_connect("/api/asr-streaming") as ws:
        assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
        with client.websocket_connect("/api/asr-streaming") as second:  # batch_size 1
            refused = msgpack.unpackb(second.receive_bytes())
            assert refused == {"type": "Error", "message": "no free channels"}
            with pytest.raises(WebSocketDisconnect) as closed:
                second.receive_bytes()
            assert closed.value.code == 1000
        ws.send_bytes(msgpack.packb({"type": "Audio", "pcm": [0.0] * 10}))
        ws.send_bytes(msgpack.packb({"type": "Marker", "id": 4}))
        got = [msgpack.unpackb(ws.receive_bytes()) for _ in range(3)]
        assert [m["type"] for m in got] == ["Word", "Step", "Marker"] and got[0]["text"] == "w10"
        end_with_error(ws, b"\xc1", 1003)
    wait_free(mods)


@pytest.mark.parametrize(
    "frame, code",
    [(b"\xc1", 1003), (msgpack.packb({"type": "Audio", "pcm": "x"}), 1003)],
)
def test_asr_bad_message_error_close_and_slot_freed(
    open_app: tuple[TestClient, list[Module]], frame: bytes, code: int
) -> None:
    client, mods = open_app
    with client.websocket_connect("/api/asr-streaming") as ws:
        ws.receive_bytes()
        ws.send_bytes(frame)
        assert msgpack.unpackb(ws.receive_bytes())["type"] == "Error"
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
        assert closed.value.code == code
    wait_free(mods)


def test_an_exception_in_a_session_closes_1011_and_frees_the_slot(
    open_app: tuple[TestClient, list[Module]], caplog: pytest.LogCaptureFixture
) -> None:
    """The fake backend answers FAULT_MARKER_ID with a Word msgpack cannot encode: the send
    task raises."""
    client, mods = open_app
    with client.websocket_connect("/api/asr-streaming") as ws:
        ws.receive_bytes()
        ws.send_bytes(msgpack.packb({"type": "Marker", "id": FAULT_MARKER_ID}))
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
        assert closed.value.code == 1011
    wait_free(mods)
    assert any("channel" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
    with client.websocket_connect("/api/asr-streaming") as ws:  # the next session is served
        assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
        end_with_error(ws, b"\xc1", 1003)


def test_tts_msgpack_flow_and_raw_errors(open_app: tuple[TestClient, list[Module]]) -> None:
    client, mods = open_app
    with client.websocket_connect("/api/tts_streaming?format=PcmMessagePack") as ws:
        assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
        ws.send_text("Hello")
        ws.send_bytes(b"\0")
        got = [msgpack.unpackb(ws.receive_bytes()) for _ in range(2)]
        assert [m["type"] for m in got] == ["Text", "Audio"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
        assert closed.value.code == 1000
    with client.websocket_connect("/api/tts_streaming?format=Pcm&voice=nobody") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
        assert closed.value.code == 1008 and "unknown voice" in closed.value.reason
    with client.websocket_connect("/api/tts_streaming?format=Pcm") as ws:
        ws.send_bytes(b"\0")
        ws.send_text("after the end")
        with pytest.raises(WebSocketDisconnect) as closed:
            while True:
                ws.receive_bytes()
        assert closed.value.code in (1000, 1008)
    wait_free(mods)


def test_token_socket_phrase_messages(open_app: tuple[TestClient, list[Module]]) -> None:
    client, mods = open_app
    with client.websocket_connect("/ws/stream") as ws:
        for token in ("Hello", " world"):
            ws.send_text(json.dumps({"token": token}))
        ws.send_text(json.dumps({"flush": True}))
        pcm = np.frombuffer(ws.receive_bytes(), "<f4")  # the two frames as one phrase
        assert abs(len(pcm) - 2 * 2 * 1920) <= 4  # 24 kHz -> 48 kHz
        ws.send_text("not json")
        assert "not valid JSON" in json.loads(ws.receive_text())["error"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_bytes()
        assert closed.value.code == 1008
    wait_free(mods)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in the JSON decoder
        b'{"text": "hi", "n": ' + b"9" * 5001 + b"}",  # over Python's integer digit limit
        b'{"text": "\xff"}',  # not UTF-8
        b"x" * (4 * 100_000 + 1),  # over the body limit (a 413)
    ],
)
def test_bad_json_bodies_get_a_4xx_not_a_traceback(
    open_app: tuple[TestClient, list[Module]], body: bytes
) -> None:
    client, mods = open_app
    for path in ("/api/tts", "/api/tts_streaming", "/v1/audio/speech"):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code in (400, 413), (path, response.status_code)
        assert response.status_code == 413 or "JSON" in response.text
    wait_free(mods)


def test_websockets_from_other_origins_are_refused_before_upgrade() -> None:
    """A browser page on another site must not drive a local Parley (issue 11, item 2): a
    browser always sends Origin; clients that are not browsers send none."""
    mods = modules(1)
    config = Config(
        modules=[ModuleConfig(m.info.name, m.info.kind, m.info.path, 1) for m in mods],
        allowed_origins=["https://app.example.com"],
    )
    client = TestClient(create_app(config, mods))
    with client:
        for path in ("/api/asr-streaming", "/ws/stream", "/api/tts_streaming"):
            for origin in ("https://evil.example", "null", "http://testserver.evil.example"):
                with pytest.raises(WebSocketDenialResponse) as denied:
                    with client.websocket_connect(path, headers={"origin": origin}):
                        pass
                assert denied.value.status_code == 403
        preflight = client.options(
            "/v1/audio/speech",
            headers={
                "origin": "https://app.example.com",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.com"
        for headers in (
            {},  # not a browser
            {"origin": "http://testserver"},  # the server's own web page
            {"origin": "https://app.example.com"},  # listed
        ):
            with client.websocket_connect("/api/asr-streaming", headers=headers) as ws:
                assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
                end_with_error(ws, b"\xc1", 1003)
    wait_free(mods)


def test_modules_info_shows_model_paths_only_to_key_holders() -> None:
    client, mods = app_client(["k"])
    mods[0].info.details["model"] = "/srv/secret/models/stt.safetensors"
    with client:
        anonymous = client.get("/api/modules_info").json()[0]
        keyed = client.get("/api/modules_info", headers={"kyutai-api-key": "k"}).json()[0]
        bearer = client.get("/api/modules_info", headers={"authorization": "Bearer k"}).json()[0]
    assert anonymous["model"] == "stt.safetensors"
    assert keyed["model"] == bearer["model"] == "/srv/secret/models/stt.safetensors"


def test_readyz_warming_ok_full_and_draining() -> None:
    """A load balancer's probe: 503 until the modules are warm, while a module is full (or
    only the one asked about), and once shutdown has begun."""
    client, mods = app_client(None)
    warming = client.get("/readyz")  # no lifespan yet: the model threads have not started
    assert warming.status_code == 503 and warming.json()["status"] == "warming"
    with client:
        ok = client.get("/readyz")
        assert ok.status_code == 200 and ok.json() == {
            "status": "ok",
            "modules": {
                "asr": {"free_slots": 1, "total_slots": 1},
                "tts": {"free_slots": 1, "total_slots": 1},
            },
        }
        with client.websocket_connect("/api/asr-streaming") as ws:
            assert msgpack.unpackb(ws.receive_bytes()) == {"type": "Ready"}
            full = client.get("/readyz")
            assert full.status_code == 503 and full.json()["status"] == "full"
            assert full.json()["modules"]["asr"]["free_slots"] == 0
            assert client.get("/readyz?module=tts").status_code == 200
            assert client.get("/readyz?module=asr").status_code == 503
            assert client.get("/readyz?module=nope").status_code == 404
            end_with_error(ws, b"\xc1", 1003)
        wait_free(mods)
        assert client.get("/readyz").status_code == 200
    draining = client.get("/readyz")
    assert draining.status_code == 503 and draining.json()["status"] == "draining"


def test_metrics_carry_the_replica_label_under_ray(
    open_app: tuple[TestClient, list[Module]],
) -> None:
    client, _ = open_app
    plain = client.get("/metrics").text
    assert "asr_open_channels{" in plain and 'replica="' not in plain
    client.app.state.serving.replica = "r1"  # type: ignore[attr-defined]  # as ParleyReplica sets it
    labelled = client.get("/metrics").text
    samples = [line for line in labelled.splitlines() if line and not line.startswith("#")]
    assert samples and all('replica="r1"' in line for line in samples)
    assert 'asr_open_channels{module="asr",replica="r1"}' in labelled
