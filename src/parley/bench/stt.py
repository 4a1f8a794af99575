"""`parley bench stt`: N concurrent real-time streams of the eval clips against a server.

Per N it reports WER (against the references, over all clips and split into read and
spontaneous speech, and beside it offline faster-whisper tiny.en on the same clips, computed
in the same run), word latency (from the moment the audio frame
holding a word's end was sent to that word's `Word` arriving), Step lag (from sending a frame to
its `Step` arriving: Steps wait for the words of their audio), end-of-turn latency (from the
frame where a clip's speech ends to the last `Word` of that clip, and to the first `Step` after
it that puts Unmute's pause prediction over 0.6), whether the server kept up (the largest
`buffered_pcm` it reported stays under 2 s), the slowest `Marker` round trip (sent after
5 s of tail silence, as Kyutai's client does), and the machine's CPU use during the run.

`--modes fast` sends every clip as a file at once, as Kyutai's `stt_from_file_rust_server.py
--rtf 1000` does, N connections at a time: there latency is not the point, accuracy against
offline is (and how many times faster than real time the clips were transcribed).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import numpy as np

from parley.bench.comma_lists import comma_choices, comma_counts
from parley.bench.eval_clips import (
    Clip,
    Playlist,
    english_clips,
    make_playlists,
    pick_clips,
    speech_span_s,
)
from parley.bench.realtime import (
    WORD_SLACK_S,
    ClipLatencies,
    moshi_latencies,
    realtime_latencies,
    realtime_stream,
)
from parley.bench.unmute import pause_crossings
from parley.bench.wer import wer
from parley.client.asr import FRAME_SAMPLES, StreamResult, TranscriptWord, transcribe_stream
from parley.engine.backend import SAMPLE_RATE_HZ

KEPT_UP_BUFFER_S = 2.0  # a stream that kept up never had more than this waiting
LEAD_SILENCE_S = 1.0  # sent before each stream's audio, as Kyutai's client does
# "together": half the streams on each socket at once, the same audio on both.
PROTOCOLS = ("moshi", "realtime", "together")
MODES = ("realtime", "fast")


@dataclass
class SplitWer:
    """WER over all clips, the read ones and the spontaneous ones."""

    all: float
    read: float
    spontaneous: float

    @classmethod
    def of(cls, clips: dict[str, Clip], hyps: list[tuple[str, str]]) -> SplitWer:
        """`hyps`: (clip id, transcript) for every clip played."""

        def part(keep: bool | None) -> float:
            chosen = [
                (clips[c].reference, h) for c, h in hyps if keep in (None, clips[c].spontaneous)
            ]
            if not chosen:
                return float("nan")
            refs, texts = zip(*chosen, strict=True)
            return wer(list(refs), list(texts))

        return cls(part(None), part(False), part(True))

    def cells(self) -> str:
        return f"{self.all:>6.3f} {self.read:>6.3f} {self.spontaneous:>6.3f}"


def words_by_clip(result: StreamResult, playlist: Playlist) -> list[list[TranscriptWord]]:
    """Per clip of a playlist, the words of the stream that fall in its time."""
    starts = [*playlist.clip_starts_s, float("inf")]
    return [
        [w for w in result.words if starts[k] <= w.start_s + WORD_SLACK_S < starts[k + 1]]
        for k in range(len(playlist.clip_ids))
    ]


def clip_transcripts(result: StreamResult, playlist: Playlist) -> list[tuple[str, str]]:
    """Each clip of a playlist with the text of its words."""
    return [
        (clip_id, " ".join(w.text for w in words))
        for clip_id, words in zip(playlist.clip_ids, words_by_clip(result, playlist), strict=True)
    ]


@dataclass
class RunStats:
    streams: int
    wer: float
    split: SplitWer
    offline_wer: float  # offline tiny.en on the same audio (nan without a baseline)
    latency_p50_s: float
    latency_p95_s: float
    step_lag_s: tuple[float, float]  # frame sent -> its Step received, p50 and p95
    eot_word_s: tuple[float, float]  # end of speech -> the clip's last Word, p50 and p95
    eot_step_s: tuple[float, float]  # end of speech -> the Step reporting the pause, p50, p95
    eot_missed: int  # clips whose pause no Step reported before the next clip
    max_buffered_s: float
    max_marker_s: float  # the slowest Marker round trip (sent after the tail silence)
    cpu_cores: float
    words: int
    clips: ClipLatencies  # first word, last word, turn end per clip (next to the Realtime's)

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


def _step_lags(result: StreamResult) -> list[float]:
    """Per Step of a frame of the paced audio (not the lead or tail silence): frame sent ->
    Step received."""
    lead = int(LEAD_SILENCE_S * SAMPLE_RATE_HZ)
    out = []
    for r in result.step_records:
        frame = ((r.step_idx + 1) * FRAME_SAMPLES - 1 - lead) // FRAME_SAMPLES
        if 0 <= frame < len(result.frame_sent_at):
            out.append(r.received_at - result.frame_sent_at[frame])
    return out


def _end_of_turn(
    result: StreamResult, playlist: Playlist, speech_ends: dict[str, float]
) -> tuple[list[float], list[float], int]:
    """Per clip: end of speech -> its last word received, and -> the first Step at or after
    the end of speech after which Unmute's pause prediction is over 0.6; and how many clips
    had no such Step before the next clip started."""
    records = result.step_records
    paused = pause_crossings([(r.step_idx, r.prs) for r in records])
    word_lat, step_lat, missed = [], [], 0
    starts = [*playlist.clip_starts_s, float("inf")]
    per_clip = words_by_clip(result, playlist)
    for k, clip_id in enumerate(playlist.clip_ids):
        end_s = starts[k] + speech_ends[clip_id]
        frame = min(len(result.frame_sent_at) - 1, int(end_s * SAMPLE_RATE_HZ) // FRAME_SAMPLES)
        sent_at = result.frame_sent_at[frame]
        words = per_clip[k]
        if words:
            word_lat.append(max(w.received_at for w in words) - sent_at)
        first_step = int((end_s + LEAD_SILENCE_S) * SAMPLE_RATE_HZ) // FRAME_SAMPLES
        next_clip_s = starts[k + 1] + LEAD_SILENCE_S
        hit = next(
            (
                r
                for r, p in zip(records, paused, strict=True)
                if p
                and r.step_idx >= first_step
                and (r.step_idx + 1) * FRAME_SAMPLES <= next_clip_s * SAMPLE_RATE_HZ
            ),
            None,
        )
        if hit is None:
            missed += 1
        else:
            step_lat.append(hit.received_at - sent_at)
    return word_lat, step_lat, missed


def _p50_p95(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("nan"), float("nan")
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


async def _run(
    url: str,
    api_key: str,
    playlists: list[Playlist],
    offline: dict[str, str] | None,
    spans: dict[str, tuple[float, float]],
    show_text: bool,
    clips_by_id: dict[str, Clip],
) -> RunStats:
    import psutil

    psutil.cpu_percent(None)
    results = await asyncio.gather(
        *(
            transcribe_stream(url, p.audio, api_key=api_key, lead_silence_s=LEAD_SILENCE_S)
            for p in playlists
        )
    )
    cpu = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
    lat = [x for r in results for x in _latencies(r)]
    eot_word, eot_step, eot_missed = [], [], 0
    clips = ClipLatencies()
    for r, p in zip(results, playlists, strict=True):
        words, steps, missed = _end_of_turn(r, p, {c: e for c, (_, e) in spans.items()})
        eot_word += words
        eot_step += steps
        eot_missed += missed
        per_clip = moshi_latencies(r, p, spans, steps)
        clips.first_word_s += per_clip.first_word_s
        clips.last_word_s += per_clip.last_word_s
        clips.turn_end_s += per_clip.turn_end_s
    refs = [p.reference for p in playlists]
    if show_text:
        for i, r in enumerate(results):
            print(f"  stream {i}: WER {wer([refs[i]], [r.text]):.3f}: {r.text}")
    offline_wer = float("nan")
    if offline is not None:
        offline_wer = wer(refs, [" ".join(offline[c] for c in p.clip_ids) for p in playlists])
    per_clip_text = [
        x for r, p in zip(results, playlists, strict=True) for x in clip_transcripts(r, p)
    ]
    return RunStats(
        streams=len(playlists),
        wer=wer(refs, [r.text for r in results]),
        split=SplitWer.of(clips_by_id, per_clip_text),
        offline_wer=offline_wer,
        latency_p50_s=float(np.percentile(lat, 50)) if lat else float("nan"),
        latency_p95_s=float(np.percentile(lat, 95)) if lat else float("nan"),
        step_lag_s=_p50_p95([x for r in results for x in _step_lags(r)]),
        eot_word_s=_p50_p95(eot_word),
        eot_step_s=_p50_p95(eot_step),
        eot_missed=eot_missed,
        max_buffered_s=max(r.max_buffered_pcm for r in results) / SAMPLE_RATE_HZ,
        max_marker_s=max(r.marker_round_trip_s for r in results),
        cpu_cores=cpu,
        words=len(lat),
        clips=clips,
    )


async def _run_realtime(
    base_url: str, api_key: str, playlists: list[Playlist], spans: dict[str, tuple[float, float]]
) -> tuple[float, ClipLatencies]:
    """The Realtime socket on the same playlists: WER and the per-clip latencies."""
    results = await asyncio.gather(
        *(realtime_stream(base_url, p.audio, api_key, LEAD_SILENCE_S) for p in playlists)
    )
    clips = ClipLatencies()
    for r, p in zip(results, playlists, strict=True):
        per_clip = realtime_latencies(r, p, spans)
        clips.first_word_s += per_clip.first_word_s
        clips.last_word_s += per_clip.last_word_s
        clips.turn_end_s += per_clip.turn_end_s
    return wer([p.reference for p in playlists], [r.text for r in results]), clips


async def _together(
    url: str,
    base_url: str,
    api_key: str,
    playlists: list[Playlist],
    spans: dict[str, tuple[float, float]],
    clips_by_id: dict[str, Clip],
) -> tuple[RunStats, tuple[float, ClipLatencies]]:
    """The same playlists on both sockets at once: the same load, side by side."""
    return await asyncio.gather(
        _run(url, api_key, playlists, None, spans, False, clips_by_id),
        _run_realtime(base_url, api_key, playlists, spans),
    )


async def _run_fast(
    url: str, api_key: str, clips: list[Clip], pcms: list[np.ndarray], streams: int
) -> tuple[SplitWer, float]:
    """Every clip as its own file, sent at once on its own connection (as Kyutai's script
    does, one file per run), `streams` connections at a time: WER over all clips, and how many
    times faster than real time they were transcribed (audio seconds / wall seconds)."""
    queue = list(range(len(clips)))
    texts: list[tuple[str, str]] = []

    async def worker() -> None:
        while queue:
            i = queue.pop(0)
            r = await transcribe_stream(
                url, pcms[i], api_key=api_key, realtime=False, lead_silence_s=LEAD_SILENCE_S
            )
            texts.append((clips[i].id, r.text))

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(streams)))
    wall_s = time.perf_counter() - start
    audio_s = sum(len(p) for p in pcms) / SAMPLE_RATE_HZ
    return SplitWer.of({c.id: c for c in clips}, texts), audio_s / wall_s


def _protocol_row(protocol: str, streams: int, wer_value: float, clips: ClipLatencies) -> str:
    cells = [
        f"{a:.2f}/{b:.2f}s"
        for a, b in map(_p50_p95, (clips.first_word_s, clips.last_word_s, clips.turn_end_s))
    ]
    return f"{protocol:>9} {streams:>7} {wer_value:>6.3f} " + " ".join(f"{c:>17}" for c in cells)


def run_stt_bench(args: argparse.Namespace) -> int:
    from parley.audio.decode import decode_file

    base_url = args.url.rstrip("/").removesuffix("/api/asr-streaming")
    url = base_url + "/api/asr-streaming"
    protocols = comma_choices(args.protocols, "--protocols", PROTOCOLS)
    modes = comma_choices(args.modes, "--modes", MODES)
    counts = comma_counts(args.streams, "--streams")
    clips = pick_clips(english_clips(args.eval_dir, max_duration_s=30.0), args.clip_ids)
    clips_by_id = {c.id: c for c in clips}
    pcms = [decode_file(c.path.read_bytes(), SAMPLE_RATE_HZ) for c in clips]
    playlists = make_playlists(clips, pcms, max(counts), args.clips)
    spans = {c.id: speech_span_s(pcm) for c, pcm in zip(clips, pcms, strict=True)}
    offline: dict[str, str] | None = None
    if not args.no_baseline:
        from parley.bench.offline import offline_transcripts

        t = time.perf_counter()
        texts = offline_transcripts([c.path for c in clips])
        offline = {c.id: text for c, text in zip(clips, texts, strict=True)}
        whole = SplitWer.of(clips_by_id, list(offline.items()))
        print(
            f"baseline: offline faster-whisper tiny.en (beam 5, whole files) on {len(clips)} "
            f"clips: WER {whole.all:.3f} (read {whole.read:.3f}, spontaneous "
            f"{whole.spontaneous:.3f}), {time.perf_counter() - t:.1f} s"
        )
    if "fast" in modes:
        print(
            "\nfast: every clip a file sent at once (stt_from_file_rust_server.py --rtf 1000), "
            "N files at a time"
        )
        offline_cells = (
            SplitWer.of(clips_by_id, list(offline.items())).cells()
            if offline is not None
            else f"{'-':>6} {'-':>6} {'-':>6}"
        )
        print(
            f"{'streams':>7} {'WER':>6} {'read':>6} {'spont':>6} | {'offline':>6} {'read':>6} "
            f"{'spont':>6} | {'x real time':>11}"
        )
        for n in counts:
            split, speed = asyncio.run(_run_fast(url, args.api_key, clips, pcms, n))
            print(f"{n:>7} {split.cells()} | {offline_cells} | {speed:>10.1f}x", flush=True)
    if "realtime" not in modes:
        return 0
    if "moshi" in protocols:
        print("\nreal time: each stream's audio paced as it plays")
        print(
            f"{'streams':>7} {'WER':>6} {'read':>6} {'spont':>6} {'offline':>7} {'lat p50':>8} "
            f"{'lat p95':>8} {'step lag p50/p95':>17} {'eot word p50/p95':>17} "
            f"{'eot step p50/p95':>17} {'missed':>6} {'max buf':>8} {'kept up':>7} "
            f"{'marker':>7} {'CPU':>6} {'words':>6}"
        )
    rows = []
    for n in counts:
        if "moshi" in protocols:
            s = asyncio.run(
                _run(url, args.api_key, playlists[:n], offline, spans, args.show_text, clips_by_id)
            )
            step_lag = f"{s.step_lag_s[0]:.2f}/{s.step_lag_s[1]:.2f}s"
            eot_word = f"{s.eot_word_s[0]:.2f}/{s.eot_word_s[1]:.2f}s"
            eot_step = f"{s.eot_step_s[0]:.2f}/{s.eot_step_s[1]:.2f}s"
            print(
                f"{s.streams:>7} {s.split.cells()} {s.offline_wer:>7.3f} {s.latency_p50_s:>7.2f}s "
                f"{s.latency_p95_s:>7.2f}s {step_lag:>17} {eot_word:>17} {eot_step:>17} "
                f"{s.eot_missed:>6} {s.max_buffered_s:>7.2f}s {'yes' if s.kept_up else 'NO':>7} "
                f"{s.max_marker_s:>6.2f}s {s.cpu_cores:>5.2f}c {s.words:>6}",
                flush=True,
            )
            rows.append(_protocol_row("moshi", n, s.wer, s.clips))
        if "realtime" in protocols:
            rt_wer, rt_clips = asyncio.run(
                _run_realtime(base_url, args.api_key, playlists[:n], spans)
            )
            rows.append(_protocol_row("realtime", n, rt_wer, rt_clips))
        if "together" in protocols:
            moshi, (rt_wer, rt_clips) = asyncio.run(
                _together(
                    url, base_url, args.api_key, playlists[: max(1, n // 2)], spans, clips_by_id
                )
            )
            rows.append(_protocol_row("moshi+", n, moshi.wer, moshi.clips))
            rows.append(_protocol_row("realtime+", n, rt_wer, rt_clips))
    print("\nper clip, from the frame where its speech starts (first word) or ends (the rest):")
    print(
        f"{'protocol':>9} {'streams':>7} {'WER':>6} {'first word p50/95':>17} "
        f"{'last word p50/95':>17} {'turn end p50/95':>17}"
    )
    print("\n".join(rows), flush=True)
    return 0
