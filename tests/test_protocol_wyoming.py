"""Every rule of the Wyoming connection on bytes alone: no server, no model.

Events are written with the `wyoming` package's own writer and the `info` event is read back
with its own reader, so the framing is checked against the reference implementation.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from wyoming.asr import Transcribe
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.event import Event, read_event, write_event
from wyoming.info import Describe, Info
from wyoming.tts import (
    Synthesize,
    SynthesizeChunk,
    SynthesizeStart,
    SynthesizeStop,
    SynthesizeVoice,
)

from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.recognition import Audio, EndWord, Marker, Step, Word
from parley.engine.speech import AudioFrame, EndOfText, SpeechConfig, SpeechEnd, TextPiece
from parley.protocol.connection import Reaction
from parley.protocol.wyoming import (
    MAX_HEADER_BYTES,
    MAX_PAYLOAD_BYTES,
    Attribution,
    AudioFormat,
    Catalog,
    EventReader,
    PcmConverter,
    SttModule,
    TtsModule,
    Voice,
    WyomingConnection,
    encode_event,
)
from parley.server.voice_names import VoiceNames

BY = Attribution("someone", "https://example.org")


def catalog() -> Catalog:
    """Two STT modules and two TTS modules, named like a real config's."""
    stt = [
        SttModule("asr", "WhisperStreaming", ["en"], BY),
        SttModule("kyutai", "KyutaiStt", ["en", "fr"], BY),
    ]
    joe = VoiceNames({"joe"}, "joe", {"narrator": "joe"})
    amelie = VoiceNames({"amelie"}, "amelie", {})
    tts = [
        TtsModule("tts", [Voice("joe", ["en_US"])], "joe", joe, BY),
        TtsModule("tts-fr", [Voice("amelie", ["fr_FR"])], "amelie", amelie, BY),
    ]
    return Catalog(stt, tts, "9.9.9")


def wire(event: Event) -> bytes:
    out = io.BytesIO()
    write_event(event, out)
    return out.getvalue()


def events_of(reaction: Reaction) -> list[Event]:
    stream = io.BytesIO(b"".join(f if isinstance(f, bytes) else f.encode() for f in reaction.send))
    found = []
    while (event := read_event(stream)) is not None:
        found.append(event)
    return found


def types_of(reaction: Reaction) -> list[str]:
    return [e.type for e in events_of(reaction)]


def error_of(reaction: Reaction) -> tuple[str, str]:
    assert reaction.ends, reaction
    last = events_of(reaction)[-1]
    assert last.type == "error"
    assert reaction.error_kind == last.data["code"]
    return last.data["code"], last.data["text"]


def pcm16(seconds: float, rate: int = 16_000, hz: float = 440.0) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * hz * t) * 32767).astype("<i2").tobytes()


# --- framing -------------------------------------------------------------------------------
def test_reader_takes_events_cut_anywhere() -> None:
    stream = b"".join(
        [
            wire(Transcribe(name="asr", language="en").event()),
            wire(AudioChunk(16_000, 2, 1, b"\x01\x02" * 10).event()),
            wire(Event("custom", {"a": 1})),
        ]
    )
    whole = list(EventReader().feed(stream))
    assert [e.type for e in whole] == ["transcribe", "audio-chunk", "custom"]
    assert whole[0].data == {"name": "asr", "language": "en"}  # data merged from after the line
    assert whole[1].data["rate"] == 16_000 and whole[1].payload == b"\x01\x02" * 10
    byte_by_byte = EventReader()
    got = [e for i in range(len(stream)) for e in byte_by_byte.feed(stream[i : i + 1])]
    assert got == whole


@pytest.mark.parametrize(
    "raw, kind",
    [
        (b"not json\n", "protocol"),
        (b"[1, 2]\n", "protocol"),
        (b'{"data": {}}\n', "protocol"),  # no type
        (b'{"type": "x", "data_length": -1}\n', "protocol"),
        (b'{"type": "x", "data": []}\n', "protocol"),
        (b'{"type": "x", "data_length": 3}\n[1]', "protocol"),  # data is not an object
        (b'{"type": "x", "payload_length": %d}\n' % (MAX_PAYLOAD_BYTES + 1), "too_big"),
        (b'{"type": "' + b"x" * MAX_HEADER_BYTES + b'"}\n', "too_big"),
        (b"{" * (MAX_HEADER_BYTES + 1), "too_big"),  # no newline, ever
    ],
)
def test_malformed_and_oversized_events_error_and_close(raw: bytes, kind: str) -> None:
    reaction = WyomingConnection(catalog()).receive(raw, 0.0)
    assert error_of(reaction)[0] == kind
    assert not reaction.push and reaction.open is None


def test_events_before_a_bad_one_are_answered() -> None:
    conn = WyomingConnection(catalog())
    reaction = conn.receive(wire(Describe().event()) + b"garbage\n" + wire(Describe().event()), 0)
    assert types_of(reaction) == ["info", "error"] and reaction.ends


def test_oversized_payload_is_refused_before_it_arrives() -> None:
    header = b'{"type": "audio-chunk", "payload_length": %d}\n' % (MAX_PAYLOAD_BYTES * 4)
    assert error_of(WyomingConnection(catalog()).receive(header, 0.0))[0] == "too_big"


# --- describe ------------------------------------------------------------------------------
def test_describe_gives_info_the_wyoming_package_reads() -> None:
    reaction = WyomingConnection(catalog()).receive(wire(Describe().event()), 0.0)
    (event,) = events_of(reaction)
    info = Info.from_event(event)
    (asr,) = info.asr
    assert [m.name for m in asr.models] == ["asr", "kyutai"]
    assert asr.models[1].languages == ["en", "fr"]
    assert asr.supports_transcript_streaming and not asr.requires_external_vad
    assert asr.version == "9.9.9"
    (tts,) = info.tts
    assert [v.name for v in tts.voices] == ["joe", "amelie"]
    assert tts.voices[0].languages == ["en_US"]
    assert tts.supports_synthesize_streaming
    assert tts.voices[0].attribution.url == BY.url
    assert reaction.open is None and not reaction.ends


def test_ping_pong_and_unknown_events_dropped() -> None:
    conn = WyomingConnection(catalog())
    reaction = conn.receive(wire(Event("ping", {"text": "hi"})) + wire(Event("detect")), 0.0)
    (pong,) = events_of(reaction)
    assert (pong.type, pong.data) == ("pong", {"text": "hi"})
    assert not reaction.ends


# --- speech to text ------------------------------------------------------------------------
def start_transcription(conn: WyomingConnection, **transcribe: Any) -> Reaction:
    data = wire(Transcribe(**transcribe).event()) + wire(AudioStart(16_000, 2, 1).event())
    return conn.receive(data, 0.0)


def test_transcription_takes_a_slot_at_audio_start_and_frees_it_with_the_transcript() -> None:
    conn = WyomingConnection(catalog())
    assert conn.receive(wire(Transcribe(language="en").event()), 0.0).open is None
    started = conn.receive(wire(AudioStart(16_000, 2, 1).event()), 0.0)
    assert started.open == "asr" and types_of(started) == ["transcript-start"]
    chunk = conn.receive(wire(AudioChunk(16_000, 2, 1, pcm16(0.2)).event()), 0.2)
    (audio,) = chunk.push  # (the resampler holds back a few ms)
    assert isinstance(audio, Audio) and audio.pcm.dtype == np.float32
    stopped = conn.receive(wire(AudioStop().event()), 0.1)
    assert isinstance(stopped.push[-1], Marker) and not stopped.send
    assert not conn.awaits_client  # the server owes the transcript now
    conn.from_session(Ready())
    first = conn.from_session(Word("Hello", 0.1))
    conn.from_session(EndWord(0.3))
    second = conn.from_session(Word("there.", 0.4))
    chunks = [e.data["text"] for r in (first, second) for e in events_of(r)]
    assert chunks == ["Hello", " there."]  # joined, they are the transcript
    done = conn.from_session(stopped.push[-1])
    assert types_of(done) == ["transcript", "transcript-stop"]
    assert events_of(done)[0].data["text"] == "Hello there."
    assert done.release and not done.ends
    assert conn.module is None and conn.awaits_client
    again = start_transcription(conn)
    assert again.open == "asr"  # the same connection transcribes again, on a new slot


def test_model_name_picks_the_module() -> None:
    reaction = start_transcription(WyomingConnection(catalog()), name="kyutai", language="fr")
    assert reaction.open == "kyutai"


@pytest.mark.parametrize(
    "transcribe, kind",
    [
        ({"name": "nope"}, "unknown_model"),
        ({"language": "fr"}, "unknown_language"),  # asr is English only
        ({"vad_sensitivity": "sleepy"}, "protocol"),
    ],
)
def test_bad_transcribe_requests(transcribe: dict[str, Any], kind: str) -> None:
    reaction = WyomingConnection(catalog()).receive(wire(Event("transcribe", transcribe)), 0.0)
    code, text = error_of(reaction)
    assert code == kind
    if kind == "unknown_model":
        assert "asr" in text and "kyutai" in text


def step(index: int, paused: bool) -> Step:
    return Step(index, [0.0, 0.0, 0.9 if paused else 0.1])


@pytest.mark.parametrize("sensitivity, steps", [("aggressive", 1), ("default", 4), ("relaxed", 11)])
def test_module_endpointing_finishes_without_audio_stop(sensitivity: str, steps: int) -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn, vad_sensitivity=sensitivity)
    for i in range(20):  # a pause before any word is no end of utterance
        assert not conn.from_session(step(i, paused=True)).push
    conn.from_session(Word("lights", 1.0))
    pushed = [conn.from_session(step(20 + i, paused=True)).push for i in range(steps)]
    assert not any(pushed[:-1]) and isinstance(pushed[-1][-1], Marker)
    done = conn.from_session(pushed[-1][-1])
    assert types_of(done) == ["transcript", "transcript-stop"] and done.release
    # The client keeps streaming until its own audio-stop: dropped, no error, no new slot.
    late = conn.receive(wire(AudioChunk(16_000, 2, 1, pcm16(0.02)).event()), 2.0)
    assert not late.push and not late.send and late.open is None
    assert conn.receive(wire(AudioStop().event()), 2.1) == Reaction()
    assert start_transcription(conn).open == "asr"


def test_speech_resets_the_pause_count() -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn)  # default: 4 paused Steps
    conn.from_session(Word("turn", 0.5))
    for i in range(3):
        conn.from_session(step(i, paused=True))
    conn.from_session(step(3, paused=False))
    assert not any(conn.from_session(step(4 + i, paused=True)).push for i in range(3))
    assert conn.from_session(step(7, paused=True)).push


@pytest.mark.parametrize(
    "fmt, payload",
    [
        ({"rate": 16_000, "width": 3, "channels": 1}, b"\0" * 6),
        ({"rate": 0, "width": 2, "channels": 1}, b"\0" * 4),
        ({"rate": 16_000, "width": 2, "channels": 0}, b"\0" * 4),
        ({"rate": 16_000, "width": 2, "channels": 2}, b"\0" * 6),  # not whole frames
        ({"rate": "16000", "width": 2, "channels": 1}, b"\0" * 4),
    ],
)
def test_wrong_audio_formats_error_and_close(fmt: dict[str, Any], payload: bytes) -> None:
    conn = WyomingConnection(catalog())
    reaction = conn.receive(wire(Event("audio-chunk", fmt, payload)), 0.0)
    assert error_of(reaction)[0] == "protocol"
    assert not reaction.push


def test_format_change_mid_stream_is_an_error() -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn)
    reaction = conn.receive(wire(AudioChunk(48_000, 2, 1, pcm16(0.02, 48_000)).event()), 0.1)
    assert "changed" in error_of(reaction)[1]


def test_audio_far_ahead_of_real_time_is_refused() -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn)
    minute = pcm16(60.0)
    reaction = Reaction()
    for _ in range(11):  # 11 minutes sent at t = 0
        reaction = conn.receive(wire(AudioChunk(16_000, 2, 1, minute).event()), 0.0)
        if reaction.ends:
            break
    assert error_of(reaction)[0] == "too_big"


def test_one_request_at_a_time() -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn)
    reaction = conn.receive(wire(Synthesize("hi").event()), 0.0)
    assert "in progress" in error_of(reaction)[1]
    orphan = WyomingConnection(catalog()).receive(wire(AudioStop().event()), 0.0)
    assert error_of(orphan)[0] == "protocol"


def test_session_error_reaches_the_client() -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn)
    assert error_of(conn.from_session(ErrorMessage("model failed")))[1] == "model failed"


def test_full_house_is_an_error_event() -> None:
    conn = WyomingConnection(catalog())
    start_transcription(conn)
    code, text = error_of(conn.refuse("no free slot on module asr"))
    assert code == "no_free_channels" and "asr" in text
    assert conn.module is None


# --- audio conversion ----------------------------------------------------------------------
def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize(
    "rate, width, channels",
    [(16_000, 2, 1), (24_000, 2, 1), (8_000, 1, 1), (44_100, 2, 2), (48_000, 4, 2)],
)
def test_any_rate_width_and_channel_count_becomes_24k_mono(
    rate: int, width: int, channels: int
) -> None:
    t = np.arange(rate) / rate  # one second
    wave = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    full = 2 ** (8 * width - 1) - 1
    dtype = {1: "u1", 2: "<i2", 4: "<i4"}[width]
    ints = wave * full + (128 if width == 1 else 0)
    # The second channel is silent: the mix is the mean, half the amplitude.
    frames = np.stack([ints] + [np.full_like(ints, 128 if width == 1 else 0)] * (channels - 1))
    payload = frames.T.astype(dtype).tobytes()
    converter = PcmConverter(AudioFormat(rate, width, channels))
    pieces = [converter.convert(payload[i : i + 4000]) for i in range(0, len(payload), 4000)]
    out = np.concatenate([*pieces, converter.convert(b"", last=True)])
    assert out.dtype == np.float32
    assert abs(out.size - SAMPLE_RATE_HZ) <= 50
    assert abs(dominant_hz(out, SAMPLE_RATE_HZ) - 440.0) < 2.0
    peak = np.percentile(np.abs(out[2000:-2000]), 99.5)
    assert peak == pytest.approx(0.5 / channels, rel=0.05)


# --- text to speech ------------------------------------------------------------------------
def test_synthesize_then_audio_events() -> None:
    conn = WyomingConnection(catalog())
    voice = SynthesizeVoice(name="narrator")  # an alias
    reaction = conn.receive(wire(Synthesize("Hello there.", voice=voice).event()), 0.0)
    assert reaction.open == "tts"
    assert reaction.push == [
        SpeechConfig("joe"),
        TextPiece("Hello there.", whole_words=False),
        EndOfText(),
    ]
    frame = np.full(1920, 0.25, np.float32)
    first = conn.from_session(AudioFrame(frame))
    assert types_of(first) == ["audio-start", "audio-chunk"]
    start, chunk = events_of(first)
    assert start.data == {"rate": SAMPLE_RATE_HZ, "width": 2, "channels": 1}
    samples = np.frombuffer(chunk.payload or b"", "<i2")
    assert samples.size == 1920 and abs(int(samples[0]) - 8192) <= 1
    assert types_of(conn.from_session(AudioFrame(frame))) == ["audio-chunk"]
    end = conn.from_session(SpeechEnd())
    assert types_of(end) == ["audio-stop"] and end.release
    assert conn.module is None


def test_voice_by_language_and_unknown_voices() -> None:
    by_language = SynthesizeVoice(language="fr")
    reaction = WyomingConnection(catalog()).receive(
        wire(Synthesize("Bonjour", voice=by_language).event()), 0.0
    )
    assert reaction.open == "tts-fr" and reaction.push[0] == SpeechConfig("amelie")
    unknown = SynthesizeVoice(name="nobody")
    reaction = WyomingConnection(catalog()).receive(
        wire(Synthesize("Hi", voice=unknown).event()), 0.0
    )
    code, text = error_of(reaction)
    assert code == "unknown_voice" and "joe" in text and "amelie" in text


def test_streaming_synthesis() -> None:
    conn = WyomingConnection(catalog())
    opened = conn.receive(wire(SynthesizeStart(voice=SynthesizeVoice(name="joe")).event()), 0.0)
    assert opened.open == "tts" and opened.push == [SpeechConfig("joe")]
    pieces = conn.receive(
        wire(SynthesizeChunk("Hel").event()) + wire(SynthesizeChunk("lo there. ").event()), 0.1
    )
    assert pieces.push == [
        TextPiece("Hel", whole_words=False),
        TextPiece("lo there. ", whole_words=False),
    ]
    early = conn.from_session(AudioFrame(np.zeros(1920, np.float32)))
    assert types_of(early) == ["audio-start", "audio-chunk"]  # before synthesize-stop
    # The whole text again, for servers without streaming: ignored.
    assert conn.receive(wire(Synthesize("Hello there.").event()), 0.2) == Reaction()
    stopped = conn.receive(wire(SynthesizeStop().event()), 0.3)
    assert stopped.push == [EndOfText()] and not conn.awaits_client
    end = conn.from_session(SpeechEnd())
    assert types_of(end) == ["audio-stop", "synthesize-stopped"] and end.release
    late = conn.receive(wire(SynthesizeChunk("more").event()), 0.4)
    assert "synthesize-start" in error_of(late)[1]


def test_idle_timeout_is_an_error() -> None:
    assert error_of(WyomingConnection(catalog()).idle(120))[0] == "idle"


def test_encode_event_is_what_the_wyoming_package_writes() -> None:
    mine = encode_event("audio-chunk", {"rate": 1, "width": 2, "channels": 1}, b"\0\1")
    theirs = read_event(io.BytesIO(mine))
    assert theirs is not None and theirs.type == "audio-chunk" and theirs.payload == b"\0\1"
    assert theirs.data == {"rate": 1, "width": 2, "channels": 1}
