"""Async client for `/api/asr-streaming`, speaking the protocol as Kyutai's own scripts do."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import numpy as np
import websockets

from parley.client.connection import (
    DEFAULT_API_KEY,
    DEFAULT_URL,
    SocketSession,
    finish_task,
    http_request_async,
    http_url,
    open_websocket,
    ws_url,
)
from parley.client.errors import ServerError as ServerError  # re-exported: the older name
from parley.client.errors import server_error
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.engine.recognition import Audio, Marker
from parley.protocol import asr

FRAME_SAMPLES = 1920
ASR_PATH = "/api/asr-streaming"


@dataclass
class TranscriptWord:
    text: str
    start_s: float
    stop_s: float | None = None
    received_at: float = 0.0  # time.monotonic() on arrival


@dataclass
class StepRecord:
    step_idx: int
    prs: list[float]
    received_at: float  # time.monotonic() on arrival


@dataclass
class StreamResult:
    words: list[TranscriptWord] = field(default_factory=list)
    steps: int = 0
    step_records: list[StepRecord] = field(default_factory=list)
    max_buffered_pcm: int = 0  # while the audio itself was being sent (not the silence after)
    last_prs: list[float] = field(default_factory=list)
    frame_sent_at: list[float] = field(default_factory=list)  # monotonic time per frame sent
    marker_round_trip_s: float = float("nan")  # the Marker sent -> the Marker back

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)


def audio_message(pcm: np.ndarray) -> bytes:
    return asr.encode_client(Audio(np.asarray(pcm, np.float32)))  # float32, as Kyutai's clients


def marker_message(marker_id: int) -> bytes:
    return asr.encode_client(Marker(marker_id))


async def connect(url: str, api_key: str) -> websockets.ClientConnection:
    # No read queue limit: `transcribe_stream` stops reading at the marker while Steps still
    # arrive, and with a full queue websockets reads no further, so the server's close frame
    # went unseen and closing took its 10 s timeout.
    return await websockets.connect(
        url, additional_headers={"kyutai-api-key": api_key}, max_size=None, max_queue=None
    )


async def iter_messages(ws: websockets.ClientConnection) -> AsyncIterator[asr.ServerMessage]:
    async for raw in ws:
        if isinstance(raw, bytes):
            yield asr.decode_server(raw)


async def transcribe_stream(
    url: str,
    pcm_24k: np.ndarray,
    *,
    api_key: str = "public_token",
    realtime: bool = True,
    lead_silence_s: float = 1.0,
    tail_silence_s: int = 5,
    after_marker_silence_s: int = 35,
) -> StreamResult:
    """Streams audio exactly as Kyutai's `stt_from_file_rust_server.py` does: one message of
    1 s of silence, then 1920-sample `Audio` messages (paced in real time, or not), then
    `tail_silence_s` one-second messages of silence, a `Marker`, and more silence until the
    marker comes back."""
    result = StreamResult()
    second = np.zeros(SAMPLE_RATE_HZ, np.float32)
    async with await connect(url, api_key) as ws:
        marker_seen = asyncio.Event()
        audio_done = asyncio.Event()
        marker_sent_at = float("nan")

        async def send() -> None:
            nonlocal marker_sent_at
            if lead_silence_s:
                await ws.send(audio_message(np.zeros(int(lead_silence_s * SAMPLE_RATE_HZ))))
            start = time.monotonic()
            for off in range(0, len(pcm_24k), FRAME_SAMPLES):
                await ws.send(audio_message(pcm_24k[off : off + FRAME_SAMPLES]))
                result.frame_sent_at.append(time.monotonic())
                if realtime:
                    delay = start + (off + FRAME_SAMPLES) / SAMPLE_RATE_HZ - time.monotonic()
                    await asyncio.sleep(max(delay, 0.001))
            audio_done.set()  # the silence below is sent faster than real time, as Kyutai's does
            for _ in range(tail_silence_s):
                await ws.send(audio_message(second))
            await ws.send(marker_message(1))
            marker_sent_at = time.monotonic()
            for _ in range(after_marker_silence_s):
                if marker_seen.is_set():
                    break
                await ws.send(audio_message(second))

        sender = asyncio.create_task(send())
        try:
            async for msg in iter_messages(ws):
                now = time.monotonic()
                if isinstance(msg, asr.Word):
                    result.words.append(TranscriptWord(msg.text, msg.start_time, None, now))
                elif isinstance(msg, asr.EndWord) and result.words:
                    result.words[-1].stop_s = msg.stop_time
                elif isinstance(msg, asr.Step):
                    result.steps += 1
                    result.step_records.append(StepRecord(msg.step_idx, msg.prs, now))
                    if not audio_done.is_set():
                        result.max_buffered_pcm = max(result.max_buffered_pcm, msg.buffered_pcm)
                    result.last_prs = msg.prs
                elif isinstance(msg, asr.Marker):
                    result.marker_round_trip_s = now - marker_sent_at
                    marker_seen.set()
                    break
                elif isinstance(msg, ErrorMessage):
                    raise server_error(msg.message)
        finally:
            await sender
    # Stream times include the lead silence; report them relative to the clip.
    for w in result.words:
        w.start_s -= lead_silence_s
        if w.stop_s is not None:
            w.stop_s -= lead_silence_s
    return result


# --- the library API: an open stream, whole-audio helpers, the one-shot POST ----------------
SttEvent = asr.Word | asr.EndWord | asr.Step | asr.Marker


class SttStream(SocketSession):
    """An open `/api/asr-streaming` session: send audio and markers, iterate what comes back.

    Iterating yields `Word` (text, start_time), `EndWord` (stop_time), `Step` (one per 80 ms
    frame; `prs[2]` is the end-of-turn probability) and `Marker` messages; an `Error` from the
    server is raised (`NoFreeChannels` when every slot is taken). Times are seconds of stream.
    """

    def __init__(self, ws: websockets.ClientConnection, pending: list[SttEvent]) -> None:
        self._ws = ws
        self._pending = pending
        self.samples_sent = 0
        self.steps_received = 0

    @classmethod
    async def open(
        cls, url: str = DEFAULT_URL, *, api_key: str = DEFAULT_API_KEY, path: str = ASR_PATH
    ) -> SttStream:
        """Connects and waits for the server's first message (`Ready` once the slot is live)."""
        ws = await open_websocket(ws_url(url, path), api_key)
        try:
            raw = await ws.recv()
            first = asr.decode_server(raw if isinstance(raw, bytes) else raw.encode())
        except websockets.ConnectionClosed as exc:
            raise ServerError(f"the server closed the stream at once ({exc})") from None
        if isinstance(first, ErrorMessage):
            await ws.close()
            raise server_error(first.message)
        return cls(ws, [] if isinstance(first, Ready) else [first])

    async def send_audio(self, pcm_24k: np.ndarray) -> None:
        """24 kHz mono float samples, any length."""
        await self._ws.send(audio_message(pcm_24k))
        self.samples_sent += len(pcm_24k)

    async def send_marker(self, marker_id: int) -> None:
        await self._ws.send(marker_message(marker_id))

    def __aiter__(self) -> AsyncIterator[SttEvent]:
        return self._events()

    async def _events(self) -> AsyncIterator[SttEvent]:
        while self._pending:
            yield self._pending.pop(0)
        try:
            async for raw in self._ws:
                if not isinstance(raw, bytes):
                    continue
                msg = asr.decode_server(raw)
                if isinstance(msg, ErrorMessage):
                    raise server_error(msg.message)
                if isinstance(msg, Ready):
                    continue
                if isinstance(msg, asr.Step):
                    self.steps_received += 1
                yield msg
        except websockets.ConnectionClosedError as exc:
            raise ServerError(f"the connection was lost ({exc})") from None

    async def words(self) -> AsyncIterator[TranscriptWord]:
        """Completed words (with stop times), until the socket closes; other events dropped."""
        word: TranscriptWord | None = None
        async for msg in self:
            if isinstance(msg, asr.Word):
                word = TranscriptWord(msg.text, msg.start_time, None, time.monotonic())
            elif isinstance(msg, asr.EndWord) and word is not None:
                word.stop_s = msg.stop_time
                yield word
                word = None


@dataclass
class Transcript:
    words: list[TranscriptWord] = field(default_factory=list)
    duration_s: float = 0.0  # audio sent, not counting the flushing silence
    end_of_turn_prs: list[float] = field(default_factory=list)  # the last Step.prs seen

    @property
    def text(self) -> str:
        return " ".join(w.text for w in self.words)

    def to_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "duration_s": round(self.duration_s, 3),
            "words": [
                {"text": w.text, "start_s": round(w.start_s, 3), "stop_s": _round(w.stop_s)}
                for w in self.words
            ],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


async def transcribe_chunks(
    chunks: AsyncIterator[np.ndarray],
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    on_word: Callable[[TranscriptWord], None] | None = None,
    max_ahead_s: float = 30.0,
    flush_silence_s: float = 1.0,
) -> Transcript:
    """Streams 24 kHz chunks (a file, a microphone) and returns the transcript.

    Sends as fast as the server takes it: at most `max_ahead_s` of audio beyond what its `Step`
    messages say it has processed. At the end: `flush_silence_s` of silence and a `Marker`,
    then a second of silence now and then until the marker comes back (moshi's models need
    silence to flush their delay; Parley flushes at the marker)."""
    transcript = Transcript()
    async with await SttStream.open(url, api_key=api_key) as stream:
        progress = asyncio.Condition()
        marker_seen = asyncio.Event()

        async def wait_for_room() -> None:
            async with progress:
                await progress.wait_for(
                    lambda: (
                        stream.samples_sent - stream.steps_received * FRAME_SAMPLES
                        < max_ahead_s * SAMPLE_RATE_HZ
                        or marker_seen.is_set()
                    )
                )

        async def send() -> None:
            async for chunk in chunks:
                for off in range(0, len(chunk), FRAME_SAMPLES * 25):  # 2 s per message
                    await wait_for_room()
                    await stream.send_audio(chunk[off : off + FRAME_SAMPLES * 25])
            transcript.duration_s = stream.samples_sent / SAMPLE_RATE_HZ
            await stream.send_audio(np.zeros(int(flush_silence_s * SAMPLE_RATE_HZ), np.float32))
            await stream.send_marker(1)
            for _ in range(35):
                try:
                    await asyncio.wait_for(marker_seen.wait(), timeout=0.5)
                    return
                except TimeoutError:
                    await stream.send_audio(np.zeros(SAMPLE_RATE_HZ, np.float32))

        sender = asyncio.create_task(send())
        try:
            async for msg in stream:
                if isinstance(msg, asr.Word):
                    transcript.words.append(TranscriptWord(msg.text, msg.start_time))
                    transcript.words[-1].received_at = time.monotonic()
                elif isinstance(msg, asr.EndWord) and transcript.words:
                    transcript.words[-1].stop_s = msg.stop_time
                    if on_word:
                        on_word(transcript.words[-1])
                elif isinstance(msg, asr.Step):
                    transcript.end_of_turn_prs = msg.prs
                    async with progress:
                        progress.notify_all()
                elif isinstance(msg, asr.Marker):
                    marker_seen.set()
                    break
                if sender.done() and sender.exception():
                    break
        finally:
            marker_seen.set()
            async with progress:
                progress.notify_all()
            await finish_task(sender)
    return transcript


async def transcribe(
    audio: np.ndarray | bytes,
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    on_word: Callable[[TranscriptWord], None] | None = None,
) -> Transcript:
    """Transcribes 24 kHz float samples, or an audio file's bytes (any format FFmpeg reads),
    over the streaming socket."""
    pcm = _as_pcm(audio)

    async def one_chunk() -> AsyncIterator[np.ndarray]:
        yield pcm

    return await transcribe_chunks(one_chunk(), url=url, api_key=api_key, on_word=on_word)


def transcribe_sync(
    audio: np.ndarray | bytes,
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    on_word: Callable[[TranscriptWord], None] | None = None,
) -> Transcript:
    return asyncio.run(transcribe(audio, url=url, api_key=api_key, on_word=on_word))


def _as_pcm(audio: np.ndarray | bytes) -> np.ndarray:
    if isinstance(audio, bytes):
        from parley.audio.decode import decode_file

        return decode_file(audio, SAMPLE_RATE_HZ)
    return np.asarray(audio, dtype=np.float32)


async def transcribe_once(
    audio_file: bytes,
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    timeout_s: float = 300.0,
) -> list[TranscriptWord]:
    """`POST /api/asr-streaming` with a whole audio file: the words with their times."""
    body, _ = await http_request_async(
        http_url(url, ASR_PATH), audio_file, api_key, "application/octet-stream", timeout_s
    )
    words: list[TranscriptWord] = []
    for item in json.loads(body):
        if item.get("type") == "Word":
            words.append(TranscriptWord(str(item["text"]), float(item["start_time"])))
        elif item.get("type") == "EndWord" and words:
            words[-1].stop_s = float(item["stop_time"])
    return words


def transcribe_once_sync(
    audio_file: bytes,
    *,
    url: str = DEFAULT_URL,
    api_key: str = DEFAULT_API_KEY,
    timeout_s: float = 300.0,
) -> list[TranscriptWord]:
    return asyncio.run(transcribe_once(audio_file, url=url, api_key=api_key, timeout_s=timeout_s))
