"""`/ws/stream`: seed 004's token-by-token TTS socket for LLM output.

In: JSON text frames `{"token": str, "pitch_shift": semitones}` and `{"flush": true}`.
Out, as the seed documents it: binary messages of raw float32 little-endian mono PCM at
48 kHz, one per synthesised phrase, and a JSON text frame only for `{"error": str}` (then the
socket closes). The seed's clients decode every message as audio and play each as a clip, so
by default nothing else is sent. On request: `?sample_rate=` another rate, `?chunk=frame` one
message per 80 ms frame (also what a backend that cannot mark phrases, KyutaiTts, sends),
`?ready=1` a first text frame `{"type": "ready", "sample_rate", "encoding", ...}`.
Synthesis starts at a sentence end, a pause, past 200 buffered characters, or on flush (the
backend's phrase rules). Tokens are pieces of text: spaces inside them carry the word
boundaries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any

import numpy as np
from starlette.websockets import WebSocket

from parley.backends.tts.piper import (
    MAX_PITCH_SEMITONES,
    Configure,
    Flush,
    PhraseEnd,
    SpeakText,
    StreamEnd,
)
from parley.backends.tts.piper_voice import OUTPUT_RATE_HZ
from parley.engine.module import NoFreeSlot, Session
from parley.protocol import tts
from parley.protocol.common import ErrorMessage, ProtocolError
from parley.server.duplex import admit, run_duplex
from parley.server.tts_routes import TtsRoutes

log = logging.getLogger(__name__)

SAMPLE_RATES_HZ = (8000, 16000, 22050, 24000, 44100, 48000)
DEFAULT_RATE_HZ = 48000  # the seed's documented rate
# The `websockets` package refuses a message over 1 MiB by default, and the seed's client keeps
# that default: a longer phrase (over 5.4 s at 48 kHz) goes out as several messages.
MAX_MESSAGE_BYTES = 1024 * 1024
QUIET_WINDOW_S = 0.01
CHUNKS = ("phrase", "frame")
_TRUE = ("1", "true", "yes")
_FALSE = ("0", "false", "no", "")
MAX_TOKEN_CHARS = 16 * 1024
CLOSE_NORMAL = 1000
CLOSE_POLICY = 1008


class TokenSocket:
    def __init__(self, tts_routes: TtsRoutes, require_auth: bool) -> None:
        self.tts = tts_routes
        self.require_auth = require_auth

    async def websocket(self, ws: WebSocket) -> None:
        ids = self.tts.authorized_ids if self.require_auth else None
        if not await admit(ws, self.tts.module, ids):
            return
        query = ws.query_params
        try:
            rate = _sample_rate(query.get("sample_rate"))
            chunk = _choice("chunk", query.get("chunk", "phrase"), CHUNKS)
            ready = _flag("ready", query.get("ready"))
            voice = self.tts.check_voice(query.get("voice"))
            session = self.tts.module.try_acquire()
        except ProtocolError as exc:
            await _error(ws, str(exc))
            return
        except NoFreeSlot:
            await _error(ws, "no free channels")
            return
        if not getattr(self.tts.module.backend, "marks_phrases", False):
            chunk = "frame"
        # The seed synthesises at any pause.
        session.push(Configure(voice, min_pause_words=1, phrase_ends=chunk == "phrase"))
        if ready:
            await ws.send_text(
                json.dumps(
                    {
                        "type": "ready",
                        "sample_rate": rate,
                        "encoding": "pcm_f32le",
                        "channels": 1,
                        "chunk": chunk,
                        "voice": voice,
                    }
                )
            )
        errors: asyncio.Queue[str] = asyncio.Queue(maxsize=1)
        await run_duplex(
            ws,
            session,
            self._receive_loop(ws, session, errors),
            self._send_loop(ws, session, rate, chunk == "phrase", errors),
            errors,
            lambda message: _error(ws, message),
        )

    async def _receive_loop(
        self, ws: WebSocket, session: Session, errors: asyncio.Queue[str]
    ) -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            try:
                item = parse_token_message(message.get("text"))
            except ProtocolError as exc:
                self.tts.count_error("protocol")
                errors.put_nowait(str(exc))
                return
            session.push(item)

    async def _send_loop(
        self,
        ws: WebSocket,
        session: Session,
        rate: int,
        per_phrase: bool,
        errors: asyncio.Queue[str],
    ) -> None:
        """Per phrase: frames gathered until the backend's PhraseEnd, the phrase resampled
        whole (nothing held back between messages). Per frame: resampled as a stream."""
        import soxr

        stream: Any = None
        if rate != OUTPUT_RATE_HZ and not per_phrase:
            stream = soxr.ResampleStream(OUTPUT_RATE_HZ, rate, 1, dtype="float32", quality="HQ")
        frames: list[np.ndarray] = []
        while True:
            msg = await session.receive()
            if isinstance(msg, ErrorMessage):
                errors.put_nowait(msg.message)
                return
            if isinstance(msg, StreamEnd):
                return
            pcm: np.ndarray | None = None
            if isinstance(msg, tts.Audio) and per_phrase:
                frames.append(msg.pcm)
            elif isinstance(msg, tts.Audio):
                pcm = msg.pcm if stream is None else stream.resample_chunk(msg.pcm)
            elif isinstance(msg, PhraseEnd) and frames:
                pcm = np.concatenate(frames)
                frames.clear()
                if rate != OUTPUT_RATE_HZ:
                    pcm = soxr.resample(pcm, OUTPUT_RATE_HZ, rate, quality="HQ")
            if pcm is not None and len(pcm):
                for part in split_message(pcm, rate):
                    await ws.send_bytes(np.asarray(part, dtype="<f4").tobytes())


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


def parse_token_message(text: str | None) -> SpeakText | Flush:
    """One client frame -> what the backend should do, or ProtocolError."""
    if text is None:
        raise ProtocolError('expected JSON text frames ({"token": ...} or {"flush": true})')
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        raise ProtocolError("frame is not valid JSON") from None
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
    return SpeakText(token, end_word=False, pitch_semitones=float(pitch))


async def _error(ws: WebSocket, message: str) -> None:
    await ws.send_text(json.dumps({"error": message}))
    await ws.close(CLOSE_POLICY)
