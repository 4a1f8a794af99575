"""`parley bench stt`: N concurrent real-time streams of the eval clips against a server.

Per N it reports WER (against the references, and beside it offline faster-whisper tiny.en
on the same clips, computed in the same run), word latency (from the moment the audio frame
holding a word's end was sent to that word's `Word` arriving), whether the server kept up
(the largest `buffered_pcm` it reported stays under 2 s), and the machine's CPU use during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import numpy as np

from parley.bench.eval_clips import Playlist, english_clips, make_playlists
from parley.bench.wer import wer
from parley.client.asr import FRAME_SAMPLES, SAMPLE_RATE_HZ, StreamResult, transcribe_stream

KEPT_UP_BUFFER_S = 2.0  # a stream that kept up never had more than this waiting


@dataclass
class RunStats:
    streams: int
    wer: float
    offline_wer: float  # offline tiny.en on the same audio (nan without a baseline)
    latency_p50_s: float
    latency_p95_s: float
    max_buffered_s: float
    cpu_cores: float
    words: int

    @property
    def kept_up(self) -> bool:
        return self.max_buffered_s <= KEPT_UP_BUFFER_S


def _latencies(result: StreamResult) -> list[float]:
    out = []
    for w in result.words:
        end_s = w.stop_s if w.stop_s is not None else w.start_s
        frame = min(
            len(result.frame_sent_at) - 1, max(0, int(end_s * SAMPLE_RATE_HZ) // FRAME_SAMPLES)
        )
        out.append(w.received_at - result.frame_sent_at[frame])
    return out


async def _run(
    url: str,
    api_key: str,
    playlists: list[Playlist],
    offline: dict[str, str] | None,
    show_text: bool,
) -> RunStats:
    import psutil

    psutil.cpu_percent(None)
    results = await asyncio.gather(
        *(transcribe_stream(url, p.audio, api_key=api_key) for p in playlists)
    )
    cpu = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
    lat = [x for r in results for x in _latencies(r)]
    refs = [p.reference for p in playlists]
    if show_text:
        for i, r in enumerate(results):
            print(f"  stream {i}: WER {wer([refs[i]], [r.text]):.3f}: {r.text}")
    offline_wer = float("nan")
    if offline is not None:
        offline_wer = wer(refs, [" ".join(offline[c] for c in p.clip_ids) for p in playlists])
    return RunStats(
        streams=len(playlists),
        wer=wer(refs, [r.text for r in results]),
        offline_wer=offline_wer,
        latency_p50_s=float(np.percentile(lat, 50)) if lat else float("nan"),
        latency_p95_s=float(np.percentile(lat, 95)) if lat else float("nan"),
        max_buffered_s=max(r.max_buffered_pcm for r in results) / SAMPLE_RATE_HZ,
        cpu_cores=cpu,
        words=len(lat),
    )


def run_stt_bench(args: argparse.Namespace) -> int:
    from parley.audio.decode import decode_file

    url = args.url.rstrip("/")
    if not url.endswith("/api/asr-streaming"):
        url += "/api/asr-streaming"
    clips = english_clips(args.eval_dir, max_duration_s=15.0)
    pcms = [decode_file(c.path.read_bytes(), SAMPLE_RATE_HZ) for c in clips]
    counts = [int(x) for x in args.streams.split(",") if x.strip()]
    playlists = make_playlists(clips, pcms, max(counts), args.clips)
    offline: dict[str, str] | None = None
    if not args.no_baseline:
        from parley.bench.offline import offline_transcripts

        t = time.perf_counter()
        texts = offline_transcripts([c.path for c in clips])
        offline = {c.id: text for c, text in zip(clips, texts, strict=True)}
        print(
            f"baseline: offline faster-whisper tiny.en (beam 5, whole files) on {len(clips)} "
            f"clips: WER {wer([c.reference for c in clips], texts):.3f}, "
            f"{time.perf_counter() - t:.1f} s"
        )
    print(
        f"{'streams':>7} {'WER':>6} {'offline':>7} {'lat p50':>8} {'lat p95':>8} {'max buf':>8} "
        f"{'kept up':>7} {'CPU':>6} {'words':>6}"
    )
    for n in counts:
        s = asyncio.run(_run(url, args.api_key, playlists[:n], offline, args.show_text))
        print(
            f"{s.streams:>7} {s.wer:>6.3f} {s.offline_wer:>7.3f} {s.latency_p50_s:>7.2f}s "
            f"{s.latency_p95_s:>7.2f}s {s.max_buffered_s:>7.2f}s "
            f"{'yes' if s.kept_up else 'NO':>7} {s.cpu_cores:>5.2f}c {s.words:>6}",
            flush=True,
        )
    return 0
