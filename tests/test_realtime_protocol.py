"""The OpenAI Realtime transcription connection on messages alone: every client event, every
error, and the events each recogniser output turns into. Server events are checked against the
`openai` SDK's own types (pydantic validation of `RealtimeServerEvent`), not only by name. Then
the route in-process (Starlette's TestClient, fake backends): keys, subprotocol, full house."""

from __future__ import annotations

import base64
import json
import warnings
from typing import Any

import numpy as np
import pytest
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from starlette.testclient import TestClient, WebSocketDenialResponse, WebSocketTestSession

from parley.config import Config, ModuleConfig
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.module import Module
from parley.engine.recognition import Audio, EndWord, Marker, Step, VadSettings, Word
from parley.protocol.connection import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, Reaction
from parley.protocol.realtime import (
    ALAW_TABLE,
    MAX_APPEND_BYTES,
    ULAW_TABLE,
    RealtimeConnection,
)
from parley.server.app import create_app
from parley.server.route_options import RecognitionRouteOptions
from tests.test_routes_in_process import modules as fake_modules
from tests.test_routes_in_process import wait_free

KNOWN = ("whisper-1", "gpt-4o-transcribe", "gpt-realtime-whisper")
GA_EVENTS: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
BETA_EVENTS: TypeAdapter[Any] = TypeAdapter(BetaServerEvent)
PAUSE = [1.0, 1.0, 1.0]  # Step.prs of a frame in a pause
SPEECH = [0.0, 0.0, 0.0]


def model_problem(model: str) -> str | None:
    return None if model in KNOWN else f"Unknown model {model!r}"


def events(reaction: Reaction, beta: bool = False) -> list[dict[str, Any]]:
    """The reaction's frames as JSON, each validated against the SDK's server event types
    (beta's `transcription_session.updated` types a REST-only `client_secret` as required, so
    that one is checked by hand)."""
    out = []
    for frame in reaction.send:
        assert isinstance(frame, str)
        event = json.loads(frame)
        if event["type"] != "transcription_session.updated":
            (BETA_EVENTS if beta else GA_EVENTS).validate_python(event)
        out.append(event)
    return out


def send(conn: RealtimeConnection, event: dict[str, Any], now_s: float = 0.0) -> Reaction:
    return conn.receive(json.dumps(event), now_s)


def started(**kwargs: Any) -> RealtimeConnection:
    conn = RealtimeConnection(model_problem, **kwargs)
    conn.start(0.0)
    return conn


def append(conn: RealtimeConnection, seconds: float, now_s: float = 1000.0) -> Reaction:
    pcm = (0.1 * np.sin(np.arange(int(seconds * 24_000)) / 5) * 32767).astype("<i2")
    event = {"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm.tobytes()).decode()}
    return send(conn, event, now_s)


def error_of(reaction: Reaction) -> dict[str, Any]:
    (event,) = events(reaction)
    assert event["type"] == "error"
    return dict(event["error"])


def step(index: int, prs: list[float]) -> Step:
    return Step(index, prs, 0)


def test_start_sends_the_effective_session_and_its_vad_settings() -> None:
    conn = RealtimeConnection(model_problem)
    reaction = conn.start(0.0)
    (created,) = events(reaction)
    assert created["type"] == "session.created"
    session = created["session"]
    assert session["type"] == "transcription"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24_000}
    assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
    assert reaction.push == [VadSettings(0.5, 0.5)]
    assert not reaction.ends


def test_a_conversation_session_is_refused_with_an_error() -> None:
    for intent in (None, "conversation"):
        reaction = RealtimeConnection(model_problem, intent=intent).start(0.0)
        error = error_of(reaction)
        assert error["code"] == "unsupported_intent" and "intent=transcription" in error["message"]
        assert reaction.close is not None and reaction.close.code == CLOSE_POLICY


def test_ga_session_update_sets_every_field_and_reports_it() -> None:
    conn = started()
    reaction = send(
        conn,
        {
            "type": "session.update",
            "session": {
                "type": "transcription",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcmu"},
                        "transcription": {"model": "gpt-4o-transcribe", "language": "en"},
                        "turn_detection": {
                            "type": "server_vad",
                            "threshold": 0.7,
                            "prefix_padding_ms": 600,
                            "silence_duration_ms": 800,
                        },
                        "noise_reduction": {"type": "near_field"},
                    }
                },
            },
        },
    )
    (updated,) = events(reaction)
    assert updated["type"] == "session.updated"
    inp = updated["session"]["audio"]["input"]
    assert inp["format"] == {"type": "audio/pcmu"}
    assert inp["transcription"]["model"] == "gpt-4o-transcribe"
    assert inp["transcription"]["language"] == "en"
    # The pre-roll is fixed: the effective padding is reported, not the one asked for.
    assert inp["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.7,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 800,
    }
    assert inp["noise_reduction"] == {"type": "near_field"}
    assert reaction.push == [VadSettings(0.7, 0.8)]


def test_beta_session_update_answers_in_the_beta_shape() -> None:
    conn = started()
    reaction = send(
        conn,
        {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_alaw",
                "input_audio_transcription": {"model": "whisper-1", "prompt": "names"},
                "turn_detection": {"silence_duration_ms": 300},
            },
        },
    )
    (updated,) = events(reaction, beta=True)
    assert updated["type"] == "transcription_session.updated"
    session = updated["session"]
    assert session["input_audio_format"] == "g711_alaw"
    assert session["input_audio_transcription"]["prompt"] == "names"
    assert session["turn_detection"]["type"] == "server_vad"
    assert session["turn_detection"]["silence_duration_ms"] == 300
    assert reaction.push == [VadSettings(0.5, 0.3)]


def test_semantic_vad_and_client_commit_models() -> None:
    conn = started()
    semantic = {"type": "semantic_vad", "eagerness": "low"}
    session = {"type": "transcription", "audio": {"input": {"turn_detection": semantic}}}
    reaction = send(conn, {"type": "session.update", "session": session})
    assert events(reaction)[0]["session"]["audio"]["input"]["turn_detection"] == semantic
    assert reaction.push == [VadSettings(0.5, 1.0)]
    # gpt-realtime-whisper has no server-side turn detection: left out, it becomes null ...
    model = {"transcription": {"model": "gpt-realtime-whisper"}}
    reaction = send(conn, {"type": "session.update", "session": {"audio": {"input": model}}})
    assert events(reaction)[0]["session"]["audio"]["input"]["turn_detection"] is None
    # ... and asked for, it is an error.
    asked = {**model, "turn_detection": {"type": "server_vad"}}
    error = error_of(send(conn, {"type": "session.update", "session": {"audio": {"input": asked}}}))
    assert "turn_detection" in error["param"]


@pytest.mark.parametrize(
    ("session", "param"),
    [
        ({"type": "realtime"}, "session.type"),
        ({"audio": {"input": {"transcription": {"model": "nope"}}}}, "transcription.model"),
        ({"audio": {"input": {"transcription": {"language": "xx"}}}}, "transcription.language"),
        ({"audio": {"input": {"format": {"type": "audio/flac"}}}}, "format.type"),
        ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 16000}}}}, "format.rate"),
        ({"audio": {"input": {"turn_detection": {"type": "push"}}}}, "turn_detection.type"),
        ({"audio": {"input": {"turn_detection": {"threshold": 2}}}}, "turn_detection.threshold"),
        ({"audio": {"input": {"noise_reduction": {"type": "x"}}}}, "noise_reduction.type"),
    ],
)
def test_a_bad_session_update_is_an_error_and_changes_nothing(
    session: dict[str, Any], param: str
) -> None:
    conn = started()
    before = conn.config
    reaction = send(conn, {"type": "session.update", "session": session, "event_id": "ev1"})
    error = error_of(reaction)
    assert error["param"].endswith(param), error
    assert error["event_id"] == "ev1"
    assert not reaction.ends and not reaction.push
    assert conn.config == before


def test_an_unknown_model_is_model_not_found() -> None:
    session = {"audio": {"input": {"transcription": {"model": "gpt-9"}}}}
    error = error_of(send(started(), {"type": "session.update", "session": session}))
    assert error["code"] == "model_not_found" and "gpt-9" in error["message"]


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        ('{"type": "response.create"}', "unknown_event"),
        ('{"type": "input_audio_buffer.append", "audio": "***"}', "invalid_base64"),
        ('{"type": "input_audio_buffer.append", "audio": "AAAA"}', "invalid_audio"),  # 3 bytes
        ('{"type": "input_audio_buffer.append"}', "invalid_value"),
    ],
)
def test_bad_events_get_one_error_and_the_session_goes_on(frame: str | bytes, code: str) -> None:
    conn = started()
    reaction = conn.receive(frame, 0.0)
    assert error_of(reaction)["code"] == code
    assert not reaction.ends and not reaction.push
    assert append(conn, 0.1).push  # still serving


def test_an_append_over_the_limit_is_refused() -> None:
    conn = started()
    audio = "A" * (MAX_APPEND_BYTES + 4)
    reaction = send(conn, {"type": "input_audio_buffer.append", "audio": audio})
    assert error_of(reaction)["code"] == "audio_too_large"
    assert not reaction.ends and not reaction.push


def test_audio_too_far_ahead_of_real_time_closes() -> None:
    conn = started(max_ahead_s=1.0)
    assert not append(conn, 0.8, now_s=0.0).ends
    reaction = append(conn, 0.8, now_s=0.1)
    assert error_of(reaction)["code"] == "audio_ahead_of_real_time"
    assert reaction.close is not None and reaction.close.code == CLOSE_TOO_BIG


def test_pcm16_is_pushed_as_24_khz_float() -> None:
    conn = started()
    samples = np.array([0, 16384, -32768, 32767], "<i2")
    event = {
        "type": "input_audio_buffer.append",
        "audio": base64.b64encode(samples.tobytes()).decode(),
    }
    (audio,) = send(conn, event).push
    assert isinstance(audio, Audio)
    np.testing.assert_allclose(audio.pcm, samples / 32768)


def test_g711_tables_match_the_standard_decoder() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop  # the standard library's G.711 (deprecated, still in 3.11)

    codes = bytes(range(256))
    ulaw = np.frombuffer(audioop.ulaw2lin(codes, 2), "<i2") / 32768
    alaw = np.frombuffer(audioop.alaw2lin(codes, 2), "<i2") / 32768
    np.testing.assert_allclose(ULAW_TABLE, ulaw, atol=1 / 32768)
    np.testing.assert_allclose(ALAW_TABLE, alaw, atol=1 / 32768)


def test_g711_audio_is_resampled_from_8_khz() -> None:
    conn = started()
    fmt = {"format": {"type": "audio/pcma"}}
    send(conn, {"type": "session.update", "session": {"audio": {"input": fmt}}})
    tone = np.sin(np.arange(8000) * 2 * np.pi * 440 / 8000) * 0.5
    codes = np.abs(ALAW_TABLE[None, :] - tone[:, None]).argmin(axis=1).astype(np.uint8)
    pushed = []
    for i in range(0, 8000, 800):
        data = base64.b64encode(codes[i : i + 800].tobytes()).decode()
        pushed += send(conn, {"type": "input_audio_buffer.append", "audio": data}).push
    pcm = np.concatenate([a.pcm for a in pushed])
    assert 3 * 8000 * 0.9 <= pcm.size <= 3 * 8000  # 24 kHz, less the resampler's delay
    spectrum = np.abs(np.fft.rfft(pcm[2000:18000]))
    peak_hz = spectrum.argmax() * 24_000 / 16_000
    assert abs(peak_hz - 440) < 5


def test_server_vad_turn_streams_deltas_then_completes() -> None:
    conn = started()
    append(conn, 2.0)
    frames = events(conn.from_session(Ready()))
    assert frames == []
    first = events(conn.from_session(Word("Hello", 0.5)))
    assert [e["type"] for e in first] == [
        "input_audio_buffer.speech_started",
        "conversation.item.input_audio_transcription.delta",
    ]
    item_id = first[0]["item_id"]
    assert first[0]["audio_start_ms"] == 200  # the word's start less 300 ms of padding
    assert first[1]["delta"] == "Hello" and first[1]["item_id"] == item_id
    assert events(conn.from_session(EndWord(0.8))) == []
    second = events(conn.from_session(Word("world.", 0.9)))
    assert [e["delta"] for e in second] == [" world."]
    # A pause shorter than silence_duration_ms (500 ms: 6 frames and a bit) ends nothing.
    for i in range(15, 20):
        assert events(conn.from_session(step(i, PAUSE))) == []
    assert events(conn.from_session(step(20, SPEECH))) == []
    for i in range(21, 27):
        assert events(conn.from_session(step(i, PAUSE))) == []
    end = events(conn.from_session(step(27, PAUSE)))
    assert [e["type"] for e in end] == [
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.input_audio_transcription.completed",
    ]
    assert end[0]["audio_end_ms"] == 21 * 80
    assert end[1]["previous_item_id"] is None and end[2]["item"]["role"] == "user"
    completed = end[3]
    assert completed["item_id"] == item_id
    assert completed["transcript"] == "Hello world." == "".join(["Hello", " world."])
    assert completed["usage"] == {"type": "duration", "seconds": 2.24}
    # The next turn is a new item, after the first.
    nxt = events(conn.from_session(Word("Again", 2.5)))
    assert nxt[0]["item_id"] != item_id and nxt[1]["delta"] == "Again"


def test_speech_started_from_the_vad_before_any_word() -> None:
    conn = started()
    (event,) = events(conn.from_session(step(10, SPEECH)))
    assert event["type"] == "input_audio_buffer.speech_started"
    assert event["audio_start_ms"] == 500  # the frame's start, 800 ms, less 300 ms of padding
    assert events(conn.from_session(step(11, SPEECH))) == []  # once an item
    conn = started()
    (event,) = events(conn.from_session(step(2, SPEECH)))
    assert event["audio_start_ms"] == 0  # not before the item's audio


def test_semantic_vad_ends_the_turn_on_the_long_pause_probability() -> None:
    conn = started()
    session = {"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}}
    send(conn, {"type": "session.update", "session": session})
    conn.from_session(Word("Hi", 0.1))
    assert events(conn.from_session(step(3, [0.9, 0.8, 0.7]))) == []  # under 0.75 (auto)
    end = events(conn.from_session(step(4, [0.9, 0.9, 0.8])))
    assert end[-1]["type"] == "conversation.item.input_audio_transcription.completed"
    assert end[-1]["transcript"] == "Hi"


def test_without_turn_detection_only_the_client_commits() -> None:
    conn = started()
    send(
        conn, {"type": "session.update", "session": {"audio": {"input": {"turn_detection": None}}}}
    )
    deltas = events(conn.from_session(Word("one", 0.1)))
    assert [e["type"] for e in deltas] == ["conversation.item.input_audio_transcription.delta"]
    for i in range(40):
        assert events(conn.from_session(step(i, PAUSE))) == []


def test_commit_needs_100_ms_of_audio() -> None:
    conn = started()
    error = error_of(send(conn, {"type": "input_audio_buffer.commit"}))
    assert error["code"] == "input_audio_buffer_commit_empty"
    append(conn, 0.05)
    assert error_of(send(conn, {"type": "input_audio_buffer.commit"}))["code"] == (
        "input_audio_buffer_commit_empty"
    )


def test_commit_completes_the_item_when_its_marker_returns() -> None:
    conn = started()
    append(conn, 1.0)
    conn.from_session(Word("before", 0.2))
    commit = send(conn, {"type": "input_audio_buffer.commit"})
    (marker,) = commit.push
    assert isinstance(marker, Marker)
    committed, added = events(commit)
    assert committed["type"] == "input_audio_buffer.committed"
    assert (
        added["type"] == "conversation.item.added" and added["item"]["id"] == committed["item_id"]
    )
    # Audio after the commit: its words wait for the next item.
    append(conn, 0.5)
    late = events(conn.from_session(Word("still", 0.7)))  # recognised before the marker
    assert late[0]["item_id"] == committed["item_id"] and late[0]["delta"] == " still"
    # A word of the audio after the commit, before the marker: held for the next item.
    assert events(conn.from_session(Word("next", 1.2))) == []
    completed, *after = events(conn.from_session(Marker(marker.id)))
    assert completed["type"] == "conversation.item.input_audio_transcription.completed"
    assert completed["transcript"] == "before still"
    assert completed["usage"]["seconds"] == 1.0
    assert [e["type"] for e in after] == [
        "input_audio_buffer.speech_started",
        "conversation.item.input_audio_transcription.delta",
    ]
    assert after[-1]["item_id"] != committed["item_id"] and after[-1]["delta"] == "next"
    # A second commit names the first item as its predecessor.
    second = events(send(conn, {"type": "input_audio_buffer.commit"}))
    assert second[0]["previous_item_id"] == committed["item_id"]


def test_clear_drops_the_words_of_the_audio_before_it() -> None:
    conn = started()
    append(conn, 1.0)
    clear = send(conn, {"type": "input_audio_buffer.clear"})
    assert [e["type"] for e in events(clear)] == ["input_audio_buffer.cleared"]
    (marker,) = clear.push
    assert events(conn.from_session(Word("dropped", 0.3))) == []
    assert events(conn.from_session(Word("kept", 1.0))) == []  # after the clear: held
    kept = events(conn.from_session(Marker(marker.id)))
    assert kept[-1]["delta"] == "kept"
    assert events(conn.from_session(Word("too", 1.1)))[-1]["delta"] == " too"
    # The cleared audio does not count toward a commit.
    assert error_of(send(conn, {"type": "input_audio_buffer.commit"}))["code"] == (
        "input_audio_buffer_commit_empty"
    )


def test_beta_clients_get_conversation_item_created() -> None:
    conn = started(beta=True)
    append(conn, 0.5)
    frames = events(send(conn, {"type": "input_audio_buffer.commit"}), beta=True)
    assert [e["type"] for e in frames] == [
        "input_audio_buffer.committed",
        "conversation.item.created",
    ]


def test_fatal_ends_full_house_idle_and_recogniser_failure() -> None:
    conn = started()
    refused = conn.refuse("no free channels")
    assert error_of(refused)["code"] == "no_free_channels"
    assert refused.close is not None and refused.close.code == CLOSE_NORMAL
    idle = conn.idle(120)
    assert error_of(idle)["code"] == "idle_timeout" and idle.ends
    failed = conn.from_session(ErrorMessage("decoder crashed"))
    assert error_of(failed)["message"] == "decoder crashed" and failed.ends


# --- the route in-process, on the fake backends of tests/test_routes_in_process.py ----------
IDLE_S = 0.3  # every session here is ended by the server (see `end_with_error` there)


def realtime_app(keys: list[str] | None, batch: int = 1) -> tuple[TestClient, list[Module]]:
    mods = fake_modules(batch)
    options = RecognitionRouteOptions(idle_timeout_s=IDLE_S)
    config = Config(
        authorized_ids=keys,
        modules=[
            ModuleConfig(m.info.name, m.info.kind, m.info.path, batch, routes=r)
            for m, r in zip(mods, [options, None], strict=True)
        ],
    )
    return TestClient(create_app(config, mods)), mods


def until_closed(ws: WebSocketTestSession) -> tuple[list[dict[str, Any]], int]:
    """The events until the server closes the socket, and the close code."""
    received = []
    while (message := ws.receive())["type"] != "websocket.close":
        received.append(json.loads(message["text"]))
    return received, int(message["code"])


def test_route_keys_subprotocol_and_intent() -> None:
    client, mods = realtime_app(["k"])
    with client:
        for headers in ({}, {"authorization": "Bearer wrong"}):
            with pytest.raises(WebSocketDenialResponse) as denied:
                with client.websocket_connect("/v1/realtime?intent=transcription", headers=headers):
                    pass
            assert denied.value.status_code == 401
        bearer = {"authorization": "Bearer k"}
        # LiveKit adds `model=` for hosts other than OpenAI's: ignored.
        url = "/v1/realtime?intent=transcription&model=gpt-4o-mini-transcribe"
        with client.websocket_connect(url, headers=bearer) as ws:
            received, code = until_closed(ws)
        assert [e["type"] for e in received] == ["session.created", "error"]
        assert received[1]["error"]["code"] == "idle_timeout" and code == 1000
        # The browser form: the key as a subprotocol; `realtime` is echoed back.
        offered = ["realtime", "openai-insecure-api-key.k", "openai-beta.realtime-v1"]
        with client.websocket_connect(
            "/v1/realtime?intent=transcription", subprotocols=offered
        ) as ws:
            assert ws.accepted_subprotocol == "realtime"
            assert until_closed(ws)[0][0]["type"] == "session.created"
        with pytest.raises(WebSocketDenialResponse) as denied:
            bad = ["realtime", "openai-insecure-api-key.wrong"]
            with client.websocket_connect("/v1/realtime?intent=transcription", subprotocols=bad):
                pass
        assert denied.value.status_code == 401
        # A conversation session: a clear error and a close, no slot taken.
        with client.websocket_connect("/v1/realtime?model=gpt-realtime", headers=bearer) as ws:
            received, code = until_closed(ws)
        assert received[0]["error"]["code"] == "unsupported_intent" and code == 1008
        wait_free(mods)


def test_route_streams_words_commits_and_frees_the_slot() -> None:
    client, mods = realtime_app(None)
    with client:
        with client.websocket_connect("/v1/realtime?intent=transcription") as ws:
            assert json.loads(ws.receive_text())["type"] == "session.created"
            pcm = np.zeros(4800, "<i2").tobytes()  # 200 ms
            audio = base64.b64encode(pcm).decode()
            ws.send_text(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            ws.send_text(json.dumps({"type": "input_audio_buffer.commit"}))
            received, code = until_closed(ws)
        kinds = [e["type"] for e in received]
        # The fake recogniser: a word per Audio, a Step of speech, the marker at once. The
        # commit may be read before or after the word and the Step come back (thread timing).
        assert kinds[-2:] == ["conversation.item.input_audio_transcription.completed", "error"]
        assert kinds.count("conversation.item.input_audio_transcription.delta") == 1
        assert kinds.index("conversation.item.input_audio_transcription.delta") < kinds.index(
            "conversation.item.input_audio_transcription.completed"
        )
        assert kinds.index("input_audio_buffer.committed") < kinds.index("conversation.item.added")
        assert set(kinds) <= {
            "input_audio_buffer.speech_started",
            "input_audio_buffer.committed",
            "conversation.item.added",
            "conversation.item.input_audio_transcription.delta",
            "conversation.item.input_audio_transcription.completed",
            "error",
        } and len(kinds) == len(set(kinds)), kinds
        assert received[-2]["transcript"] == "w4800"
        assert code == 1000
        wait_free(mods)


def test_route_full_house_is_an_error_then_close() -> None:
    client, mods = realtime_app(None, batch=1)
    with client:
        with client.websocket_connect("/v1/realtime?intent=transcription") as first:
            assert json.loads(first.receive_text())["type"] == "session.created"
            with client.websocket_connect("/v1/realtime?intent=transcription") as second:
                received, code = until_closed(second)
            assert received[0]["error"]["code"] == "no_free_channels" and code == 1000
            until_closed(first)
        wait_free(mods)
