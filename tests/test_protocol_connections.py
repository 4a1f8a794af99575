"""Every connection rule of the socket protocols on bytes alone: no server, no model.

Each protocol's connection is fed client frames, session messages and the clock, and its
reactions (session items, frames, close codes) are checked as the wire requires them.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack
import numpy as np
import pytest

from parley.engine.chat import ChatAudio, ChatText, UserAudio
from parley.engine.messages import ErrorMessage
from parley.engine.recognition import Audio, Marker, Word
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    Flush,
    PhraseEnd,
    SpeechConfig,
    SpeechEnd,
    SpokenWord,
    TextPiece,
    VoiceEmbedding,
)
from parley.protocol import asr, tts
from parley.protocol.chat import AUDIO, ERROR, HANDSHAKE, TEXT, ChatConnection
from parley.protocol.common import MAX_MESSAGE_BYTES, ProtocolError
from parley.protocol.connection import Close, Reaction
from parley.protocol.token_socket import TokenConnection


def voices(name: str | None) -> str:
    if name in (None, "", "joe"):
        return "joe"
    raise ProtocolError(f"unknown voice {name!r} (known: joe)")


def error_of(reaction: Reaction) -> str:
    assert reaction.ends and reaction.send
    frame = reaction.send[-1]
    assert isinstance(frame, bytes)
    message = msgpack.unpackb(frame)
    assert message["type"] == "Error"
    return str(message["message"])


def ogg_pages(seconds: float) -> list[bytes]:
    """Ogg/Opus pages of a tone, as a client sends them frame by frame."""
    import sphn

    writer = sphn.OpusStreamWriter(24_000)
    pcm = (0.1 * np.sin(np.arange(int(seconds * 24_000)) / 10)).astype(np.float32)
    pages = [bytes(writer.append_pcm(pcm[i : i + 1920])) for i in range(0, len(pcm), 1920)]
    return [p for p in pages if p]


# --- /api/asr-streaming --------------------------------------------------------------------
def test_asr_audio_markers_and_ignored_frames() -> None:
    conn = asr.AsrConnection()
    assert conn.start(0.0) == Reaction()  # Ready comes from the backend
    audio = conn.receive(msgpack.packb({"type": "Audio", "pcm": [0.5, 0.25]}), 0.1)
    assert len(audio.push) == 1 and isinstance(audio.push[0], Audio) and not audio.ends
    assert conn.receive(msgpack.packb({"type": "Marker", "id": 9}), 0.1).push == [Marker(9)]
    assert conn.receive("text frames mean nothing", 0.1) == Reaction()
    assert conn.receive(msgpack.packb({"type": "Init"}), 0.1) == Reaction()


@pytest.mark.parametrize(
    "frame, code, kind",
    [
        (b"\xc1", 1003, "protocol"),
        (msgpack.packb({"type": "Nope"}), 1003, "protocol"),
        (msgpack.packb({"type": "Audio", "pcm": [float("inf")]}), 1003, "protocol"),
        (msgpack.packb({"type": "Audio", "pcm": ["0.5", "0.25"]}), 1003, "protocol"),
        (msgpack.packb({"type": "Audio", "pcm": [True, False]}), 1003, "protocol"),
        (msgpack.packb({"type": "Marker", "id": 1e300}), 1003, "protocol"),  # cannot echo back
        (msgpack.packb({"type": "Marker", "id": 2.5}), 1003, "protocol"),
        (b"\x00" * (MAX_MESSAGE_BYTES + 1), 1009, "too_big"),
    ],
)
def test_asr_bad_frame_one_error_then_close(frame: bytes, code: int, kind: str) -> None:
    conn = asr.AsrConnection()
    conn.start(0.0)
    reaction = conn.receive(frame, 0.0)
    assert error_of(reaction) and reaction.close == Close(code) and reaction.error_kind == kind
    assert not reaction.push


def test_asr_audio_too_far_ahead_of_real_time() -> None:
    conn = asr.AsrConnection(max_ahead_s=2.0)
    conn.start(100.0)
    second = msgpack.packb({"type": "Audio", "pcm": [0.0] * 24_000})
    assert not conn.receive(second, 100.0).ends
    assert not conn.receive(second, 100.0).ends  # 2 s ahead: at the limit
    late = conn.receive(second, 100.5)  # 3 s sent after 0.5 s
    assert "ahead of real time" in error_of(late) and late.close == Close(1009)
    assert not asr.AsrConnection(max_ahead_s=2.0).receive(second, 0.0).ends


def test_asr_session_messages_and_idle() -> None:
    conn = asr.AsrConnection()
    conn.start(0.0)
    sent = conn.from_session(Word("hi", 0.5))
    assert msgpack.unpackb(sent.send[0]) == {"type": "Word", "text": "hi", "start_time": 0.5}
    failed = conn.from_session(ErrorMessage("boom"))
    assert error_of(failed) == "boom" and failed.close == Close(1000)
    idle = conn.idle(120.0)
    assert "no data for 120 s" in error_of(idle) and idle.error_kind == "idle"
    refused = conn.refuse("no free channels")
    assert error_of(refused) == "no free channels" and refused.close == Close(1000)


# --- /api/tts_streaming --------------------------------------------------------------------
def tts_conn(query: dict[str, str], embeddings: bool = False) -> tuple[Any, Reaction]:
    conn = tts.TtsConnection(embeddings, ["joe"])
    return conn, conn.start(query, voices)


def test_tts_start_msgpack_and_raw() -> None:
    _, start = tts_conn({"format": "PcmMessagePack", "voice": "joe"})
    assert start.push == [SpeechConfig("joe")]
    assert [msgpack.unpackb(f) for f in start.send] == [{"type": "Ready"}]
    _, raw = tts_conn({"format": "pcm"})  # case does not matter; raw formats send no Ready
    assert raw.push == [SpeechConfig("joe")] and raw.send == []


def test_tts_refusals_per_format() -> None:
    _, bad_format = tts_conn({"format": "wav"})
    assert bad_format.close == Close(1008, bad_format.close.reason) and not bad_format.send
    assert "unknown format" in bad_format.close.reason
    _, unknown = tts_conn({"format": "PcmMessagePack", "voice": "nobody"})
    assert "unknown voice" in error_of(unknown) and unknown.close == Close(1000)
    _, raw_unknown = tts_conn({"format": "Pcm", "voice": "nobody"})
    assert raw_unknown.close is not None and raw_unknown.close.code == 1008
    assert "unknown voice" in raw_unknown.close.reason and not raw_unknown.send


def test_tts_text_eos_and_after_eos() -> None:
    conn, _ = tts_conn({"format": "PcmMessagePack"})
    assert conn.receive("Hello", 0.0).push == [TextPiece("Hello", whole_words=True)]
    packed = msgpack.packb({"type": "Text", "text": "there"})
    assert conn.receive(packed, 0.0).push == [TextPiece("there", whole_words=True)]
    assert conn.awaits_client
    assert conn.receive(b"\0", 0.0).push == [EndOfText()]
    assert not conn.awaits_client  # no idle timeout once the text has ended
    late = conn.receive("more", 0.0)
    assert error_of(late) == "Text message after Eos" and late.close == Close(1000)


def test_tts_voice_embeddings() -> None:
    voice = msgpack.packb({"type": "Voice", "embeddings": [0.0, 1.0], "shape": [1, 2]})
    conn, _ = tts_conn({"format": "PcmMessagePack"}, embeddings=True)
    pushed = conn.receive(voice, 0.0).push
    assert len(pushed) == 1 and isinstance(pushed[0], VoiceEmbedding)
    conn.receive("Hi", 0.0)
    assert "before any Text" in error_of(conn.receive(voice, 0.0))
    plain, _ = tts_conn({"format": "PcmMessagePack"}, embeddings=False)
    refused = plain.receive(voice, 0.0)
    assert "cannot take Voice embeddings" in error_of(refused) and "joe" in error_of(refused)


def test_tts_output_formats() -> None:
    frame = AudioFrame(np.full(1920, 0.25, np.float32))
    word = SpokenWord("hi", 0.0, 0.3)
    conn, _ = tts_conn({"format": "Pcm"})
    assert conn.from_session(word) == Reaction()  # raw formats carry audio only
    assert conn.from_session(frame).send == [frame.pcm.astype("<f4").tobytes()]
    conn, _ = tts_conn({"format": "PcmMessagePack"})
    assert msgpack.unpackb(conn.from_session(word).send[0])["type"] == "Text"
    audio = msgpack.unpackb(conn.from_session(frame).send[0])
    assert audio["type"] == "Audio" and len(audio["pcm"]) == 1920
    conn, _ = tts_conn({"format": "OggOpusMessagePack"})
    pages = b"".join(
        msgpack.unpackb(f)["data"] for _ in range(10) for f in conn.from_session(frame).send
    )
    assert pages.startswith(b"OggS")
    assert conn.from_session(SpeechEnd()) == Reaction(close=Close(1000))
    failed = conn.from_session(ErrorMessage("synthesis failed"))
    assert error_of(failed) == "synthesis failed" and failed.error_kind == "synthesis"


# --- /ws/stream ----------------------------------------------------------------------------
def test_token_defaults_are_the_seeds() -> None:
    conn = TokenConnection(marks_phrases=True)
    start = conn.start({}, voices)
    assert start.send == []  # no text frame unless asked
    assert start.push == [SpeechConfig("joe", min_pause_words=1, phrase_ends=True)]
    token = conn.receive(json.dumps({"token": " Hello", "pitch_shift": 2}), 0.0)
    assert token.push == [TextPiece(" Hello", whole_words=False, pitch_semitones=2.0)]
    assert conn.receive('{"flush": true}', 0.0).push == [Flush()]
    half = np.full(1920, 0.5, np.float32)
    assert conn.from_session(AudioFrame(half)) == Reaction()  # gathered until the phrase ends
    assert conn.from_session(AudioFrame(half[:100])) == Reaction()
    sent = conn.from_session(PhraseEnd()).send
    assert len(sent) == 1 and isinstance(sent[0], bytes)
    pcm = np.frombuffer(sent[0], "<f4")
    assert abs(len(pcm) - 2 * 2020) <= 2  # 24 kHz -> 48 kHz, the phrase whole
    assert conn.from_session(PhraseEnd()) == Reaction()  # an empty phrase sends nothing


def test_token_on_request_and_without_phrase_marks() -> None:
    conn = TokenConnection(marks_phrases=True)
    start = conn.start({"ready": "1", "chunk": "frame", "sample_rate": "24000"}, voices)
    ready = json.loads(str(start.send[0]))
    assert ready["type"] == "ready" and ready["sample_rate"] == 24_000
    assert ready["chunk"] == "frame" and start.push[0].phrase_ends is False
    frame = np.full(1920, 0.5, np.float32)
    assert conn.from_session(AudioFrame(frame)).send == [frame.astype("<f4").tobytes()]
    kyutai = TokenConnection(marks_phrases=False)  # cannot mark phrases: frames, always
    assert kyutai.start({}, voices).push[0].phrase_ends is False


@pytest.mark.parametrize(
    "query, needle",
    [
        ({"sample_rate": "12345"}, "sample_rate"),
        ({"chunk": "word"}, "chunk"),
        ({"ready": "maybe"}, "ready"),
        ({"voice": "nobody"}, "unknown voice"),
    ],
)
def test_token_bad_query(query: dict[str, str], needle: str) -> None:
    refused = TokenConnection(True).start(query, voices)
    assert refused.close == Close(1008) and needle in json.loads(str(refused.send[0]))["error"]


@pytest.mark.parametrize(
    "frame, needle",
    [
        ("not json", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # RecursionError in the decoder
        ('{"token": "x", "pitch_shift": ' + "9" * 5001 + "}", "not valid JSON"),  # int limit
        ('["token"]', "JSON object"),
        ('{"tok": "x"}', '"token"'),
        ('{"token": 5}', "must be a string"),
        ('{"token": "x", "pitch_shift": "up"}', "pitch_shift"),
        ('{"token": "x", "pitch_shift": 40}', "between -12 and 12"),
        ('{"token": "' + "x" * 20_000 + '"}', "exceeds"),
        (b"\x00\x01", "JSON text frames"),
    ],
)
def test_token_bad_frames(frame: str | bytes, needle: str) -> None:
    conn = TokenConnection(True)
    conn.start({}, voices)
    refused = conn.receive(frame, 0.0)
    assert refused.close == Close(1008) and not refused.push
    assert needle in json.loads(str(refused.send[0]))["error"]


# --- /api/chat -----------------------------------------------------------------------------
def test_asr_ogg_opus_decoded_as_it_comes() -> None:
    conn = asr.AsrConnection()
    conn.start(0.0)
    pushed = [
        item
        for page in ogg_pages(1.0)
        for item in conn.receive(msgpack.packb({"type": "OggOpus", "data": page}), 1.0).push
    ]
    assert pushed and all(isinstance(a, Audio) for a in pushed)
    assert 0.5 * 24_000 < sum(a.pcm.size for a in pushed) <= 24_000


def test_chat_handshake_audio_and_text() -> None:
    conn = ChatConnection()
    assert conn.start(0.0).send == [bytes([HANDSHAKE])]
    pushed = [i for p in ogg_pages(1.0) for i in conn.receive(bytes([AUDIO]) + p, 0.5).push]
    assert pushed and all(isinstance(p, UserAudio) for p in pushed)
    assert conn.receive(bytes([0x03]) + b"control", 0.5) == Reaction()  # ignored kinds
    assert conn.receive("text", 0.5) == Reaction()
    assert conn.from_session(ChatText(" hello")).send == [bytes([TEXT]) + b" hello"]
    frames = [conn.from_session(ChatAudio(np.zeros(1920, np.float32))) for _ in range(10)]
    assert any(r.send and r.send[0][:1] == bytes([AUDIO]) for r in frames)


@pytest.mark.parametrize(
    "frame, needle",
    [
        (bytes([AUDIO]) + b"RIFF....", "Ogg pages"),
        (bytes([AUDIO]) + b"\x00" * (1024 * 1024 + 1), "exceeds"),
    ],
)
def test_chat_bad_audio(frame: bytes, needle: str) -> None:
    conn = ChatConnection()
    conn.start(0.0)
    refused = conn.receive(frame, 0.0)
    assert refused.close == Close(1000) and refused.send[0][:1] == bytes([ERROR])
    assert needle in refused.send[0][1:].decode()


def test_chat_audio_too_far_ahead() -> None:
    conn = ChatConnection()
    conn.start(0.0)
    reactions = [conn.receive(bytes([AUDIO]) + page, 0.0) for page in ogg_pages(31.0)]
    refused = [r for r in reactions if r.ends]
    assert len(refused) >= 1 and b"ahead of real time" in refused[0].send[0]


@pytest.mark.parametrize("samples", [0, 5, 15, 16, 1920, 70_000])
def test_audio_frames_are_the_msgpack_map_kyutai_clients_read(samples: int) -> None:
    """The audio encoder writes the bytes by hand (numpy, not a list per frame): they must be
    what msgpack writes for the same map, and decode back to the samples."""
    pcm = np.random.default_rng(samples).uniform(-1, 1, samples).astype(np.float32)
    data = tts.encode_server(AudioFrame(pcm))
    expected = {"type": "Audio", "pcm": pcm.tolist()}
    assert data == msgpack.packb(expected, use_bin_type=True, use_single_float=True)
    decoded = tts.decode_server(data)
    assert isinstance(decoded, AudioFrame)
    np.testing.assert_array_equal(decoded.pcm, pcm)
