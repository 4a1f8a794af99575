"""The moshi ASR codec on bytes alone."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from parley.protocol import asr
from parley.protocol.common import MAX_MESSAGE_BYTES, ErrorMessage, ProtocolError


def test_audio_float32_and_float64() -> None:
    for single in (True, False):
        raw = msgpack.packb({"type": "Audio", "pcm": [0.5, -0.25, 0.0]}, use_single_float=single)
        msg = asr.decode_client(raw)
        assert isinstance(msg, asr.Audio)
        assert msg.pcm.dtype == np.float32 and msg.pcm.tolist() == [0.5, -0.25, 0.0]


def test_ogg_opus_bin_or_int_array() -> None:
    assert asr.decode_client(msgpack.packb({"type": "OggOpus", "data": b"OggS"})) == asr.OggOpus(
        b"OggS"
    )
    assert asr.decode_client(
        msgpack.packb({"type": "OggOpus", "data": list(b"OggS")})
    ) == asr.OggOpus(b"OggS")


def test_marker_and_init() -> None:
    assert asr.decode_client(msgpack.packb({"type": "Marker", "id": 42})) == asr.Marker(42)
    assert asr.decode_client(msgpack.packb({"type": "Init"})) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc1",
        msgpack.packb("Audio"),
        msgpack.packb({"type": 3}),
        msgpack.packb({"type": "Nope"}),
        msgpack.packb({"type": "Audio"}),
        msgpack.packb({"type": "Audio", "pcm": [[0.1]]}),
        msgpack.packb({"type": "Audio", "pcm": [float("nan")]}),
        msgpack.packb({"type": "OggOpus", "data": "text"}),
        msgpack.packb({"type": "OggOpus", "data": [1, 300]}),
        msgpack.packb({"type": "Marker", "id": True}),
        b"\x00" * (MAX_MESSAGE_BYTES + 1),
    ],
)
def test_malformed_input_is_a_protocol_error(raw: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        asr.decode_client(raw)
    assert str(info.value)


def test_server_messages_round_trip_as_moshi_maps() -> None:
    msgs: list[asr.ServerMessage] = [
        asr.Ready(),
        asr.Word("hello", 1.25),
        asr.EndWord(1.5),
        asr.Step(7, [0.1, 0.2, 0.3], 1920),
        asr.Marker(3),
        ErrorMessage("no free channels"),
    ]
    for m in msgs:
        raw = asr.encode_server(m)
        assert msgpack.unpackb(raw)["type"] == type(m).__name__.replace("Message", "")
        assert asr.decode_server(raw) == m


def test_client_encoders_round_trip() -> None:
    """The client library's encoders are the inverse of the server's decoders."""
    from parley.protocol import tts

    audio = asr.decode_client(asr.encode_client(asr.Audio(np.array([0.5, -0.25], np.float32))))
    assert isinstance(audio, asr.Audio) and audio.pcm.tolist() == [0.5, -0.25]
    assert asr.decode_client(asr.encode_client(asr.Marker(3))) == asr.Marker(3)
    assert tts.decode_client(tts.encode_client(tts.Text("hi"))) == tts.Text("hi")
    assert tts.decode_client(tts.encode_client(tts.Eos())) == tts.Eos()
    voice = tts.decode_client(
        tts.encode_client(tts.VoiceEmbedding(np.array([1.0, 2.0], np.float32), [1, 2]))
    )
    assert isinstance(voice, tts.VoiceEmbedding) and voice.shape == [1, 2]
