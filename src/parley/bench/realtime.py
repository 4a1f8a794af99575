"""`parley bench stt --protocols ...,realtime`: the same paced playlists through OpenAI's
Realtime transcription socket, with the latencies both protocols share, so the protocol's own
overhead shows next to the moshi socket's in one run.

Per clip: first word (from sending the frame where the clip's speech starts to its first word:
a `Word`, or a `...transcription.delta`), last word (from the frame where its speech ends to its
last word) and turn end (from that frame to the end-of-turn signal: a `Step` whose `prs[2]`
passes 0.6 on the moshi socket, what Unmute waits for; `...transcription.completed` with
server_vad's defaults on the Realtime one). Realtime deltas carry no times: a delta belongs to
the clip its item's `speech_started.audio_start_ms` falls in.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass, field

import numpy as np

from parley.bench.eval_clips import Playlist
from parley.client.asr import StreamResult
from parley.client.connection import open_websocket
from parley.client.errors import server_error
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.protocol.realtime import TurnDetection

PADDING_S = TurnDetection("server_vad").prefix_padding_ms / 1000  # in audio_start_ms
TAIL_SILENCE_S = 2.0  # after the playlist, as the moshi bench's tail (the last turn ends)
WORD_SLACK_S = 0.35  # a clip's first word may be aligned this much before the clip starts


@dataclass
class ClipLatencies:
    first_word_s: list[float] = field(default_factory=list)
    last_word_s: list[float] = field(default_factory=list)
    turn_end_s: list[float] = field(default_factory=list)


@dataclass
class RealtimeItem:
    speech_start_s: float | None = None  # in the playlist's time
    delta_at: list[float] = field(default_factory=list)  # time.monotonic() on arrival
    completed_at: float | None = None
    transcript: str = ""


@dataclass
class RealtimeResult:
    items: dict[str, RealtimeItem] = field(default_factory=dict)
    frame_sent_at: list[float] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(i.transcript for i in self.items.values() if i.transcript)


def _append(pcm: np.ndarray) -> str:
    s16 = (np.clip(pcm, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return json.dumps(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(s16).decode()}
    )


async def realtime_stream(
    base_url: str, pcm_24k: np.ndarray, api_key: str, lead_silence_s: float
) -> RealtimeResult:
    """Lead silence, the audio in 80 ms appends paced in real time, TAIL_SILENCE_S of silence,
    then a commit; returns once the committed item (the last) is completed."""
    result = RealtimeResult()
    url = base_url + "/v1/realtime?intent=transcription"
    async with await open_websocket(url, api_key) as ws:

        async def send() -> None:
            await ws.send(_append(np.zeros(int(lead_silence_s * SAMPLE_RATE_HZ), np.float32)))
            start = time.monotonic()
            for off in range(0, len(pcm_24k), FRAME_SAMPLES):
                await ws.send(_append(pcm_24k[off : off + FRAME_SAMPLES]))
                result.frame_sent_at.append(time.monotonic())
                delay = start + (off + FRAME_SAMPLES) / SAMPLE_RATE_HZ - time.monotonic()
                await asyncio.sleep(max(delay, 0.001))
            await ws.send(_append(np.zeros(int(TAIL_SILENCE_S * SAMPLE_RATE_HZ), np.float32)))
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

        sender = asyncio.create_task(send())
        try:
            previous, last_item = "", None
            async for frame in ws:
                now = time.monotonic()
                event = json.loads(frame)
                kind = event["type"]
                item = result.items.setdefault(event.get("item_id", ""), RealtimeItem())
                if kind == "input_audio_buffer.speech_started":
                    start_s = event["audio_start_ms"] / 1000 + PADDING_S - lead_silence_s
                    item.speech_start_s = start_s
                elif kind.endswith("input_audio_transcription.delta"):
                    item.delta_at.append(now)
                elif kind.endswith("input_audio_transcription.completed"):
                    item.completed_at, item.transcript = now, event["transcript"]
                    if event["item_id"] == last_item:
                        break
                elif kind == "input_audio_buffer.committed" and previous != "speech_stopped":
                    last_item = event["item_id"]  # the client's commit, not a turn end
                elif kind == "error":
                    raise server_error(event["error"]["message"])
                previous = kind.rsplit(".", 1)[-1]
        finally:
            await sender
    result.items.pop("", None)
    return result


def _sent_at(frame_sent_at: list[float], at_s: float) -> float:
    frame = min(len(frame_sent_at) - 1, max(0, int(at_s * SAMPLE_RATE_HZ) // FRAME_SAMPLES))
    return frame_sent_at[frame]


def realtime_latencies(
    result: RealtimeResult, playlist: Playlist, spans: dict[str, tuple[float, float]]
) -> ClipLatencies:
    out = ClipLatencies()
    starts = [*playlist.clip_starts_s, float("inf")]
    for k, clip_id in enumerate(playlist.clip_ids):
        items = [
            i
            for i in result.items.values()
            if i.delta_at
            and i.speech_start_s is not None
            and starts[k] <= i.speech_start_s + WORD_SLACK_S < starts[k + 1]
        ]
        if not items:
            continue
        begin_s, end_s = (starts[k] + t for t in spans[clip_id])
        out.first_word_s.append(items[0].delta_at[0] - _sent_at(result.frame_sent_at, begin_s))
        end_sent = _sent_at(result.frame_sent_at, end_s)
        out.last_word_s.append(items[-1].delta_at[-1] - end_sent)
        if items[-1].completed_at is not None:
            out.turn_end_s.append(items[-1].completed_at - end_sent)
    return out


def moshi_latencies(
    result: StreamResult,
    playlist: Playlist,
    spans: dict[str, tuple[float, float]],
    turn_end_s: list[float],
) -> ClipLatencies:
    """The same for the moshi socket; `turn_end_s` comes from the moshi bench's Step rule."""
    out = ClipLatencies(turn_end_s=turn_end_s)
    starts = [*playlist.clip_starts_s, float("inf")]
    for k, clip_id in enumerate(playlist.clip_ids):
        words = [w for w in result.words if starts[k] <= w.start_s + WORD_SLACK_S < starts[k + 1]]
        if not words:
            continue
        begin_s, end_s = (starts[k] + t for t in spans[clip_id])
        out.first_word_s.append(words[0].received_at - _sent_at(result.frame_sent_at, begin_s))
        out.last_word_s.append(words[-1].received_at - _sent_at(result.frame_sent_at, end_s))
    return out
