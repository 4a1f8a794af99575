"""Seed 004's token socket (`/ws/stream`), sans I/O.

In: JSON text frames `{"token": str, "pitch_shift": semitones}` and `{"flush": true}`.
Out, as the seed documents it: binary messages of raw float32 little-endian mono PCM at
48 kHz, one per synthesised phrase, and a JSON text frame only for `{"error": str}` (then close
1008). The seed's clients decode every message as audio and play each as a clip, so by default
nothing else is sent. On request: `?sample_rate=` another rate, `?chunk=frame` one message per
80 ms frame (also what a backend that cannot mark phrases, KyutaiTts, sends), `?ready=1` a
first text frame `{"type": "ready", "sample_rate", "encoding", ...}`. Tokens are pieces of
text: spaces inside them carry the word boundaries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage
from parley.engine.speech import (
    MAX_PITCH_SEMITONES,
    AudioFrame,
    Flush,
    PhraseEnd,
    SpeechConfig,
    SpeechEnd,
    SpeechOutput,
    TextPiece,
)
from parley.protocol.common import ProtocolError
from parley.protocol.connection import CLOSE_NORMAL, CLOSE_POLICY, Close, Reaction, failure

SAMPLE_RATES_HZ = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_RATE_HZ = 48000  # the seed's documented rate
# The `websockets` package refuses a message over 1 MiB by default, and the seed's client keeps
# that default: a longer phrase (over 5.4 s at 48 kHz) goes out as several messages.
MAX_MESSAGE_BYTES = 1024 * 1024
QUIET_WINDOW_S = 0.01
CHUNKS = ("phrase", "frame")
MAX_TOKEN_CHARS = 16 * 1024
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")


class TokenConnection:
    def __init__(self, marks_phrases: bool) -> None:
        self.marks_phrases = marks_phrases
        self.rate = DEFAULT_RATE_HZ
        self.per_phrase = True
        self._stream: Any = None  # soxr stream resampler, per frame
        self._frames: list[np.ndarray] = []

    def start(
        self, query: Mapping[str, str], resolve_voice: Callable[[str | None], str]
    ) -> Reaction:
        try:
            self.rate = _sample_rate(query.get("sample_rate"))
            chunk = _choice("chunk", query.get("chunk", "phrase"), CHUNKS)
            ready = _flag("ready", query.get("ready"))
            voice = resolve_voice(query.get("voice"))
        except ProtocolError as exc:
            return self.refuse(str(exc), "protocol")
        if not self.marks_phrases:
            chunk = "frame"
        self.per_phrase = chunk == "phrase"
        if not self.per_phrase and self.rate != SAMPLE_RATE_HZ:
            import soxr

            self._stream = soxr.ResampleStream(
                SAMPLE_RATE_HZ, self.rate, 1, dtype="float32", quality="HQ"
            )
        # The seed synthesises at any pause.
        config = SpeechConfig(voice, min_pause_words=1, phrase_ends=self.per_phrase)
        send: list[bytes | str] = []
        if ready:
            announce = {
                "type": "ready",
                "sample_rate": self.rate,
                "encoding": "pcm_f32le",
                "channels": 1,
                "chunk": chunk,
                "voice": voice,
            }
            send.append(json.dumps(announce))
        return Reaction(push=[config], send=send)

    def refuse(self, message: str, kind: str = "no_free_channels") -> Reaction:
        return failure(kind, [json.dumps({"error": message})], CLOSE_POLICY)

    def receive(self, data: bytes | str, now_s: float) -> Reaction:
        try:
            item = parse_token_message(data if isinstance(data, str) else None)
        except ProtocolError as exc:
            return self.refuse(str(exc), "protocol")
        return Reaction(push=[item])

    awaits_client = True  # quiet both ways for idle_timeout_s: closed (slots are scarce)
    encodes_audio = False  # float32 (soxr resampling costs less than a thread hop)

    def idle(self, timeout_s: float) -> Reaction:
        return self.refuse(f"no tokens for {timeout_s:g} s", "idle")

    def from_session(self, msg: SpeechOutput) -> Reaction:
        if isinstance(msg, ErrorMessage):
            return self.refuse(msg.message, "synthesis")
        if isinstance(msg, SpeechEnd):
            return Reaction(close=Close(CLOSE_NORMAL))
        pcm: np.ndarray | None = None
        if isinstance(msg, AudioFrame) and self.per_phrase:
            self._frames.append(msg.pcm)
        elif isinstance(msg, AudioFrame):
            pcm = msg.pcm if self._stream is None else self._stream.resample_chunk(msg.pcm)
        elif isinstance(msg, PhraseEnd) and self._frames:
            pcm = np.concatenate(self._frames)
            self._frames.clear()
            if self.rate != SAMPLE_RATE_HZ:  # the phrase whole: nothing held back between them
                import soxr

                pcm = soxr.resample(pcm, SAMPLE_RATE_HZ, self.rate, quality="HQ")
        if pcm is None or not len(pcm):
            return Reaction()
        return Reaction(
            send=[np.asarray(p, dtype="<f4").tobytes() for p in split_message(pcm, self.rate)]
        )


def parse_token_message(text: str | None) -> TextPiece | Flush:
    """One client frame -> what the session should do, or ProtocolError."""
    if text is None:
        raise ProtocolError('expected JSON text frames ({"token": ...} or {"flush": true})')
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # bad JSON, a 5,000-digit number, deep nesting
        raise ProtocolError("frame is not valid JSON (or nested too deep)") from None
    if not isinstance(obj, dict):
        raise ProtocolError('expected a JSON object ({"token": ...} or {"flush": true})')
    if obj.get("flush") is True:
        return Flush()
    if "token" not in obj:
        raise ProtocolError('a message needs "token" (a string) or "flush": true')
    token = obj["token"]
    if not isinstance(token, str):
        raise ProtocolError('"token" must be a string')
    if len(token) > MAX_TOKEN_CHARS:
        raise ProtocolError(f"token of {len(token)} characters exceeds {MAX_TOKEN_CHARS}")
    pitch = obj.get("pitch_shift", 0)
    if isinstance(pitch, bool) or not isinstance(pitch, int | float) or not math.isfinite(pitch):
        raise ProtocolError('"pitch_shift" must be a number of semitones')
    if abs(pitch) > MAX_PITCH_SEMITONES:
        raise ProtocolError(
            f'"pitch_shift" must be between -{MAX_PITCH_SEMITONES:g} and '
            f"{MAX_PITCH_SEMITONES:g} semitones, got {pitch}"
        )
    return TextPiece(token, whole_words=False, pitch_semitones=float(pitch))


def split_message(pcm: np.ndarray, rate: int) -> list[np.ndarray]:
    """`pcm` in parts of at most MAX_MESSAGE_BYTES of float32, each cut at the quietest
    10 ms in the last quarter before its limit (a pause between words, where there is one)."""
    limit = MAX_MESSAGE_BYTES // 4
    parts = []
    while len(pcm) > limit:
        win = max(1, int(QUIET_WINDOW_S * rate))
        search = pcm[limit * 3 // 4 : limit]
        n = len(search) // win
        energy = np.square(search[: n * win]).reshape(n, win).sum(axis=1)
        cut = limit * 3 // 4 + int(np.argmin(energy)) * win + win // 2
        parts.append(pcm[:cut])
        pcm = pcm[cut:]
    return [*parts, pcm]


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ProtocolError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _flag(name: str, value: str | None) -> bool:
    if value is None or value.lower() in _FALSE:
        return False
    if value.lower() in _TRUE:
        return True
    raise ProtocolError(f"{name} must be 1 or 0, got {value!r}")


def _sample_rate(value: str | None) -> int:
    if value is None:
        return DEFAULT_RATE_HZ
    try:
        rate = int(value)
    except ValueError:
        rate = -1
    if rate not in SAMPLE_RATES_HZ:
        raise ProtocolError(
            f"sample_rate must be one of {', '.join(map(str, SAMPLE_RATES_HZ))}, got {value!r}"
        )
    return rate
