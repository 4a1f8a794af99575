"""`parley bench wyoming`: any Wyoming server (Parley, wyoming-faster-whisper, wyoming-piper)
measured the way Home Assistant uses it, with the `wyoming` package's own client.

- STT: each English eval clip up to `--max-clip-s`, sent as a satellite sends it (16 kHz s16le
  mono, 20 ms chunks, in real time), then `audio-stop`; the figure is the time from
  `audio-stop` to the `transcript` event (a server that endpoints by itself may answer
  earlier: then it is counted as 0 and flagged), plus the WER of the transcripts.
- TTS: one `synthesize` event per text (the clips' reference transcripts, `--tts-sentences` of
  them joined into one text); the figures are the time from sending it to the first
  `audio-chunk` and to `audio-stop` (the whole request), and the audio's length.
- Each with `--clients` connections at once (each runs the list of clips or texts in its own
  order), so a server that serialises clients shows it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlparse

import numpy as np
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.tts import Synthesize, SynthesizeVoice

from parley.bench.comma_lists import comma_counts
from parley.bench.eval_clips import Clip, english_clips
from parley.bench.wer import wer

CHUNK_S = 0.02
STT_RATE_HZ = 16_000


@dataclass
class SttResult:
    latency_s: float  # audio-stop -> transcript (0: the transcript came before audio-stop)
    early: bool
    text: str
    reference: str


@dataclass
class TtsResult:
    first_audio_s: float
    last_audio_s: float  # synthesize -> audio-stop
    audio_s: float


T = TypeVar("T")


def _client(uri: str) -> AsyncTcpClient:
    parsed = urlparse(uri)
    if parsed.scheme != "tcp" or not parsed.hostname or not parsed.port:
        raise ValueError(f"expected tcp://HOST:PORT, got {uri!r}")
    return AsyncTcpClient(parsed.hostname, parsed.port, read_timeout=120.0)


def _s16(clip: Clip) -> bytes:
    from parley.audio.decode import decode_file

    pcm = decode_file(clip.path.read_bytes(), STT_RATE_HZ)
    return bytes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())


async def _transcribe(uri: str, clip: Clip, audio: bytes) -> SttResult:
    chunk_bytes = int(STT_RATE_HZ * CHUNK_S) * 2
    client = _client(uri)
    async with client as c:
        transcript: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()

        async def read() -> None:
            while True:
                event = await c.read_event()
                if event is None:
                    raise ConnectionError("server closed the connection")
                if Transcript.is_type(event.type):
                    transcript.set_result((Transcript.from_event(event).text, time.monotonic()))
                    return
                if event.type == "error":
                    raise RuntimeError(f"server error: {event.data}")

        reader = asyncio.create_task(read())
        await c.write_event(Transcribe(language="en").event())
        await c.write_event(AudioStart(STT_RATE_HZ, 2, 1).event())
        start = time.monotonic()
        for i in range(0, len(audio), chunk_bytes):
            if transcript.done():
                break
            chunk = AudioChunk(STT_RATE_HZ, 2, 1, audio[i : i + chunk_bytes])
            await c.write_event(chunk.event())
            due = start + (i + chunk_bytes) / (2 * STT_RATE_HZ)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        stop_at = time.monotonic()
        await c.write_event(AudioStop().event())
        await reader
        text, at = transcript.result()
    return SttResult(max(0.0, at - stop_at), at < stop_at, text, clip.reference)


async def _synthesize(uri: str, text: str, voice: str | None) -> TtsResult:
    client = _client(uri)
    async with client as c:
        sent = time.monotonic()
        await c.write_event(Synthesize(text, voice=SynthesizeVoice(name=voice)).event())
        first, samples, rate = None, 0, 1
        while True:
            event = await c.read_event()
            if event is None or event.type == "error":
                raise RuntimeError(f"no audio: {event.data if event else 'connection closed'}")
            if event.type == "audio-start":
                rate = int(event.data["rate"])
            if event.type == "audio-chunk":
                first = first if first is not None else time.monotonic() - sent
                width, channels = int(event.data["width"]), int(event.data["channels"])
                samples += len(event.payload or b"") // (width * channels)
            if event.type == "audio-stop":
                last = time.monotonic() - sent
                break
    assert first is not None, "no audio-chunk before audio-stop"
    return TtsResult(first, last, samples / rate)


async def _concurrently(n: int, jobs: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """`n` clients at once, each running every job in its own (rotated) order."""

    async def client(k: int) -> list[T]:
        order = [*jobs[k % len(jobs) :], *jobs[: k % len(jobs)]]
        return [await job() for job in order]

    results = await asyncio.gather(*(client(k) for k in range(n)))
    return [r for rs in results for r in rs]


def _spread(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(ordered):.3f} s, p90 {p90:.3f} s, max {ordered[-1]:.3f} s"


def run_wyoming_bench(args: argparse.Namespace) -> int:
    clips = [c for c in english_clips(args.eval_dir) if c.duration_s <= args.max_clip_s]
    clips = clips[: args.clips]
    for n in comma_counts(args.clients, "--clients"):
        if args.stt:
            audio = {c.id: _s16(c) for c in clips}
            heard = [functools.partial(_transcribe, args.stt, c, audio[c.id]) for c in clips]
            stt = asyncio.run(_concurrently(n, heard))
            score = wer([r.reference for r in stt], [r.text for r in stt])
            early = sum(r.early for r in stt)
            print(
                f"stt {args.stt} clients={n}: audio-stop -> transcript "
                f"{_spread([r.latency_s for r in stt])} over {len(stt)} utterances"
                f" ({early} answered before audio-stop); WER {score:.3f}",
                flush=True,
            )
        if args.tts:
            k = args.tts_sentences
            texts = [
                " ".join(c.reference for c in clips[i : i + k]) for i in range(0, len(clips), k)
            ]
            spoken = [functools.partial(_synthesize, args.tts, t, args.voice) for t in texts]
            tts = asyncio.run(_concurrently(n, spoken))
            print(
                f"tts {args.tts} clients={n}: synthesize -> first audio-chunk "
                f"{_spread([r.first_audio_s for r in tts])}, -> audio-stop "
                f"{_spread([r.last_audio_s for r in tts])} over {len(tts)} texts "
                f"({sum(r.audio_s for r in tts):.1f} s of audio)",
                flush=True,
            )
    return 0


def add_parser(bench_sub: Any) -> None:
    p = bench_sub.add_parser(
        "wyoming", help="any Wyoming STT/TTS server, as Home Assistant uses it"
    )
    p.add_argument("--stt", metavar="URI", help="a Wyoming STT server, tcp://HOST:PORT")
    p.add_argument("--tts", metavar="URI", help="a Wyoming TTS server, tcp://HOST:PORT")
    p.add_argument("--voice", help="TTS voice name (default: the server's)")
    p.add_argument("--clients", default="1,4", help="comma-separated client counts")
    p.add_argument("--clips", type=int, default=4, help="clips (and texts) per client")
    p.add_argument("--max-clip-s", type=float, default=8.0, help="longest clip used")
    p.add_argument(
        "--tts-sentences", type=int, default=1, help="clip transcripts joined into one TTS text"
    )
    p.add_argument("--eval-dir", default="../shared/eval")
    p.set_defaults(func=run_wyoming_bench)
