"""`parley transcribe` and `parley speak`: the client library from the command line.

Exit status: 0 done, 1 the server could not do it (unreachable, key refused, no free channels,
an error it reported) or the input file is unreadable, 2 no sound device (or bad usage).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np

from parley.client.asr import Transcript, TranscriptWord, transcribe_chunks
from parley.client.connection import DEFAULT_API_KEY, DEFAULT_URL
from parley.client.errors import NoFreeChannels, ParleyError
from parley.client.sound import (
    NoSoundDevice,
    SpeakerPlayer,
    VirtualPlayer,
    load_sounddevice,
    write_wav,
)
from parley.client.tts import TtsStream
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.speech import SpokenWord

PROGRESS_MIN_WORDS = 30  # shorter texts are over before a progress bar would help


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    transcribe = sub.add_parser("transcribe", help="speech to text from a file or the microphone")
    source = transcribe.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="an audio file (any format FFmpeg reads)")
    source.add_argument("--mic", action="store_true", help="listen to the default microphone")
    transcribe.add_argument(
        "--seconds", type=float, help="with --mic: stop after this long (default: Ctrl-C)"
    )
    transcribe.add_argument("--format", choices=["text", "json", "srt"], default="text")
    _add_server_args(transcribe)
    transcribe.set_defaults(func=run_transcribe)

    speak = sub.add_parser("speak", help="text to speech, streamed as the text comes")
    speak.add_argument("text", help='the text, or "-" to stream stdin line by line')
    speak.add_argument("-o", "--output", help="write a 24 kHz 16-bit mono WAV")
    speak.add_argument("--play", action="store_true", help="play on the default output device")
    speak.add_argument("--voice", help="a voice the server has configured (default: its default)")
    _add_server_args(speak)
    speak.set_defaults(func=run_speak)


def _add_server_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server (default {DEFAULT_URL})")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="sent as kyutai-api-key")


def _fail(message: str, status: int) -> int:
    print(f"parley: {message}", file=sys.stderr)
    return status


def _run(main: Callable[[], Awaitable[int]]) -> int:
    """Runs a command; every expected failure becomes one line on stderr and an exit status."""
    try:
        return asyncio.run(main())  # type: ignore[arg-type]
    except NoSoundDevice as exc:
        return _fail(str(exc), 2)
    except NoFreeChannels:
        return _fail("the server has no free channels (every slot is busy); try again later", 1)
    except ParleyError as exc:
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


# --- transcribe ----------------------------------------------------------------------------
def run_transcribe(args: argparse.Namespace) -> int:
    if args.mic:
        sounddevice = _sound_or_none("input")
        if sounddevice is None:
            return 2
        chunks = _microphone(sounddevice, args.seconds)
    else:
        try:
            pcm = _decode(Path(args.file))
        except (OSError, ValueError) as exc:
            return _fail(f"cannot read {args.file}: {exc}", 1)
        chunks = _one_chunk(pcm)

    def show(word: TranscriptWord) -> None:
        print(word.text, end=" ", file=sys.stderr, flush=True)

    async def main() -> int:
        transcript = await transcribe_chunks(
            chunks, url=args.url, api_key=args.api_key, on_word=show
        )
        print(file=sys.stderr)
        sys.stdout.write(format_transcript(transcript, args.format))
        return 0

    return _run(main)


def _sound_or_none(kind: str) -> object | None:
    try:
        sounddevice: object = load_sounddevice(kind)
    except NoSoundDevice as exc:
        _fail(str(exc), 2)
        return None
    return sounddevice


def _decode(path: Path) -> np.ndarray:
    from parley.audio.decode import decode_file

    return decode_file(path.read_bytes(), SAMPLE_RATE_HZ)


async def _one_chunk(pcm: np.ndarray) -> AsyncIterator[np.ndarray]:
    yield pcm


async def _microphone(sounddevice: object, seconds: float | None) -> AsyncIterator[np.ndarray]:
    """80 ms blocks from the default input until Ctrl-C (or `seconds`)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[np.ndarray] = asyncio.Queue()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def on_block(indata: np.ndarray, _frames: int, _time: object, _status: object) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, indata[:, 0].copy())

    stream = sounddevice.InputStream(  # type: ignore[attr-defined]
        samplerate=SAMPLE_RATE_HZ, channels=1, dtype="float32", blocksize=1920, callback=on_block
    )
    print("listening; Ctrl-C to stop", file=sys.stderr)
    deadline = None if seconds is None else time.monotonic() + seconds
    with stream:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            try:
                yield await asyncio.wait_for(queue.get(), timeout=0.2)
            except TimeoutError:
                continue
    loop.remove_signal_handler(signal.SIGINT)


def _cues(words: list[TranscriptWord]) -> list[list[TranscriptWord]]:
    """Subtitle-sized groups: split after a sentence end, a pause, 12 words or 6 s."""
    cues: list[list[TranscriptWord]] = []
    for word in words:
        if cues:
            last = cues[-1][-1]
            gap_s = word.start_s - (last.stop_s or last.start_s)
            if (
                last.text.endswith((".", "?", "!"))
                or gap_s > 1.0
                or len(cues[-1]) >= 12
                or word.start_s - cues[-1][0].start_s > 6.0
            ):
                cues.append([word])
                continue
            cues[-1].append(word)
        else:
            cues.append([word])
    return cues


def _srt_time(seconds: float) -> str:
    ms = round(max(seconds, 0.0) * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def format_transcript(transcript: Transcript, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(transcript.to_json(), indent=2) + "\n"
    lines = []
    for i, cue in enumerate(_cues(transcript.words), start=1):
        start, stop = max(cue[0].start_s, 0.0), cue[-1].stop_s or cue[-1].start_s
        text = " ".join(w.text for w in cue)
        if fmt == "srt":
            lines.append(f"{i}\n{_srt_time(start)} --> {_srt_time(stop)}\n{text}\n")
        else:
            lines.append(f"[{start:7.2f} - {stop:7.2f}] {text}")
    return "\n".join(lines) + "\n" if lines else ""


# --- speak ---------------------------------------------------------------------------------
def run_speak(args: argparse.Namespace) -> int:
    if not args.output and not args.play:
        return _fail("speak needs -o FILE.wav or --play (or both)", 2)
    sounddevice = None
    if args.play:
        sounddevice = _sound_or_none("output")
        if sounddevice is None:
            return 2
    from_stdin = args.text == "-"
    total_words = None if from_stdin else len(args.text.split())

    async def main() -> int:
        player = SpeakerPlayer(sounddevice) if sounddevice else VirtualPlayer()
        progress = _Progress(total_words)
        frames: list[np.ndarray] = []
        words_sent: list[float] = []  # monotonic send time of each word
        async with await TtsStream.open(args.url, api_key=args.api_key, voice=args.voice) as tts:

            async def send() -> None:
                async for word in _stdin_words() if from_stdin else _words(args.text):
                    await tts.send(word)
                    words_sent.append(time.monotonic())
                    progress.sent = len(words_sent)
                await tts.end()

            sender = asyncio.create_task(send())
            first_audio_at = last_audio_at = None
            try:
                async for item in tts:
                    if isinstance(item, SpokenWord):
                        progress.spoken += 1
                        progress.draw()
                        continue
                    last_audio_at = time.monotonic()
                    first_audio_at = first_audio_at or last_audio_at
                    frames.append(item)
                    player.push(item)
            finally:
                if not sender.done():
                    sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)
        progress.done()
        playback_s = await player.finish()
        pcm = np.concatenate(frames) if frames else np.zeros(0, np.float32)
        if args.output:
            write_wav(args.output, pcm)
        if not words_sent or first_audio_at is None or last_audio_at is None:
            print("no audio (the text was empty)", file=sys.stderr)
            return 0
        audio_s = len(pcm) / SAMPLE_RATE_HZ
        generation_s = last_audio_at - words_sent[0]
        played = "played" if sounddevice else "simulated real-time playback"
        print(f"time to first audio: {first_audio_at - words_sent[0]:.3f} s")
        print(
            f"generation time: {generation_s:.3f} s for {audio_s:.2f} s of audio "
            f"({audio_s / max(generation_s, 1e-6):.2f}x real time)"
        )
        print(f"playback time: {playback_s:.3f} s ({played})")
        print(f"buffer underruns: {player.underruns} ({player.stalled_s:.3f} s of silence)")
        if args.output:
            print(f"wrote {args.output}")
        return 0

    return _run(main)


async def _words(text: str) -> AsyncIterator[str]:
    for word in text.split():
        yield word


async def _stdin_words() -> AsyncIterator[str]:
    """Words as lines arrive on stdin (a pipe from an LLM, say), not after EOF."""
    while True:
        line = await asyncio.to_thread(sys.stdin.readline)
        if not line:
            return
        for word in line.split():
            yield word


class _Progress:
    """Words spoken / words sent, redrawn in place on a terminal (nothing in a log)."""

    def __init__(self, total_words: int | None) -> None:
        self.total = total_words
        self.sent = 0
        self.spoken = 0
        self.enabled = sys.stderr.isatty() and (total_words or PROGRESS_MIN_WORDS) >= (
            PROGRESS_MIN_WORDS
        )

    def draw(self) -> None:
        if not self.enabled:
            return
        if self.total:
            filled = int(30 * self.spoken / self.total)
            bar = "#" * filled + "-" * (30 - filled)
            print(f"\r[{bar}] {self.spoken}/{self.total} words", end="", file=sys.stderr)
        else:
            print(f"\r{self.spoken} words spoken, {self.sent} sent", end="", file=sys.stderr)
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled and self.spoken:
            print(file=sys.stderr)
