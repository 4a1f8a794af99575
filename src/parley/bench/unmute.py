"""Kyutai Unmute's turn taking, driven against an STT socket the way Unmute drives it.

Written from reading Unmute (kyutai-labs/unmute: `unmute/stt/speech_to_text.py`,
`unmute/unmute_handler.py`, `unmute/llm/chatbot.py`, `unmute/kyutai_constants.py`):

- the microphone audio goes out as it is recorded (here one 80 ms frame every 80 ms);
- each `Step` moves Unmute's stream clock on by 80 ms (it starts at -STT_DELAY_SEC = -0.5 s)
  and, after the first 12, feeds `prs[2]` into its pause prediction: an exponential moving
  average with 10 ms attack and release starting at 1.0, so at 80 ms steps it follows `prs[2]`
  almost at once;
- the first word of a new user message sets the pause prediction to 0;
- while the user is speaking (the last chat message is a non-empty user message), a pause
  prediction over 0.6 is the end of the turn: Unmute sends ceil(0.5 / 0.08) + 1 = 8 silent
  frames at once, then at each microphone frame checks whether its stream clock has passed
  (clock at the end of turn + 0.5 s); the first time it has, the user's message goes to the LLM
  (the *handover*) and the bot speaks;
- a word that arrives while the bot speaks interrupts it and starts a new user message.

That is Kyutai's STT contract: words come out in stream order with the Steps, 0.5 s after they
start. A word that arrives after a handover but starts before the stream time that handover
waited for (`covered_s`) missed its turn: the LLM never saw it, and it interrupts the bot.

`python -m parley.bench.unmute --url ws://127.0.0.1:8080` plays each English eval clip as one
Unmute user would and reports the turn WER (the words handed over in time) beside the WER of
all the words, and the time from the end of speech to the handover.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import time
from dataclasses import dataclass, field

import numpy as np

from parley.client.asr import (
    FRAME_SAMPLES,
    TranscriptWord,
    audio_message,
    connect,
    iter_messages,
    marker_message,
)
from parley.client.errors import server_error
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage, Ready
from parley.protocol import asr

FRAME_TIME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
STT_DELAY_S = 0.5  # Unmute's STT_DELAY_SEC: the delay it assumes words come out with
END_OF_TURN_THRESHOLD = 0.6  # pause prediction above this ends the user's turn
IGNORED_FIRST_STEPS = 12  # "the pause prediction is all over the place in the first few steps"
PAUSE_HALF_LIFE_S = 0.01  # attack and release time of the moving average
FLUSH_FRAMES = math.ceil(STT_DELAY_S / FRAME_TIME_S) + 1
CLOSING_MARKER_ID = 1


class PausePrediction:
    """Unmute's `pause_prediction`: a moving average of `Step.prs[2]`."""

    def __init__(self) -> None:
        self.value = 1.0
        self._to_skip = IGNORED_FIRST_STEPS

    def on_step(self, prs: list[float]) -> float:
        if self._to_skip:
            self._to_skip -= 1
            return self.value
        alpha = 1.0 - 2.0 ** (-FRAME_TIME_S / PAUSE_HALF_LIFE_S)
        self.value = (1.0 - alpha) * self.value + alpha * float(prs[2])
        return self.value


def pause_crossings(steps: list[tuple[int, list[float]]]) -> list[bool]:
    """For Steps in arrival order, (step_idx, prs): whether Unmute's pause prediction is over
    the end-of-turn threshold after each."""
    pause = PausePrediction()
    return [pause.on_step(prs) > END_OF_TURN_THRESHOLD for _, prs in steps]


@dataclass
class Handover:
    covered_s: float  # Unmute's clock at the end of turn + 0.5 s: the audio it takes as heard
    text: str  # the user's message given to the LLM
    at: float  # time.monotonic()


@dataclass
class HeardWord:
    word: TranscriptWord
    handovers_before: int  # handovers made before it arrived
    latest_step_s: float  # end time of the latest Step received before it (-inf: none)


@dataclass
class UnmuteRun:
    heard: list[HeardWord] = field(default_factory=list)  # every word, until the closing Marker
    handovers: list[Handover] = field(default_factory=list)
    steps: int = 0
    frame_sent_at: list[float] = field(default_factory=list)  # per frame of the user's audio
    frame_stream_s: list[float] = field(default_factory=list)  # where each starts in the stream

    @property
    def words(self) -> list[TranscriptWord]:
        return [h.word for h in self.heard]

    def late(self) -> list[TranscriptWord]:
        """Words that arrived after the handover of the turn they were spoken in."""
        return [
            h.word
            for h in self.heard
            if h.handovers_before
            and h.word.start_s < self.handovers[h.handovers_before - 1].covered_s
        ]

    def all_handed_over(self) -> bool:
        """Whether the last word arrived before a handover (so every word reached the LLM)."""
        return bool(self.heard) and self.heard[-1].handovers_before < len(self.handovers)

    @property
    def all_text(self) -> str:
        return " ".join(w.text for w in self.words)

    @property
    def turn_text(self) -> str:
        """What reached the LLM in the turn it was said in."""
        late = {id(w) for w in self.late()}
        return " ".join(w.text for w in self.words if id(w) not in late)

    def stream_time_s(self, audio_s: float) -> float:
        """Stream time (what word and Step times count) of a time in the user's audio: the
        flushes' silent frames are in the stream but not in the audio."""
        frame = min(len(self.frame_stream_s) - 1, int(audio_s * SAMPLE_RATE_HZ) // FRAME_SAMPLES)
        return self.frame_stream_s[frame] + audio_s - frame * FRAME_TIME_S

    def handover_latency_s(self, speech_end_s: float) -> float | None:
        """From sending the frame where speech ends (`speech_end_s` into the user's audio) to
        the handover of a turn that covers it (None if the last words went in a turn handed
        over before the end of speech)."""
        frame = min(
            len(self.frame_sent_at) - 1, int(speech_end_s * SAMPLE_RATE_HZ) // FRAME_SAMPLES
        )
        end_s = self.stream_time_s(speech_end_s)
        for h in self.handovers:
            if h.covered_s >= end_s:
                return h.at - self.frame_sent_at[frame]
        return None


async def converse(
    url: str,
    pcm_24k: np.ndarray,
    *,
    api_key: str = "public_token",
    speech_end_s: float | None = None,
    max_wait_s: float = 20.0,
) -> UnmuteRun:
    """Speaks `pcm_24k` to the STT socket as an Unmute user, then stays silent (the microphone
    still streaming) until the user's turn is handed over and Unmute's clock has passed
    `speech_end_s` (default: the end of the audio), or `max_wait_s` passes; then a `Marker`
    collects every remaining word."""
    audio_end_s = len(pcm_24k) / SAMPLE_RATE_HZ if speech_end_s is None else speech_end_s
    n_frames = math.ceil(len(pcm_24k) / FRAME_SAMPLES)
    audio = np.zeros(n_frames * FRAME_SAMPLES, np.float32)
    audio[: len(pcm_24k)] = pcm_24k
    silence = np.zeros(FRAME_SAMPLES, np.float32)
    run = UnmuteRun()
    async with await connect(url, api_key) as ws:
        raw = await ws.recv()
        first = asr.decode_server(raw if isinstance(raw, bytes) else raw.encode())
        if isinstance(first, ErrorMessage):
            raise server_error(first.message)
        if not isinstance(first, Ready):
            raise RuntimeError(f"expected Ready, got {first!r}")
        pause = PausePrediction()
        clock = -STT_DELAY_S
        latest_step_s = float("-inf")
        state = "waiting_for_user"  # Unmute's conversation_state()
        message: list[str] = []  # the user message being built
        marker_back = asyncio.Event()

        async def receive() -> None:
            nonlocal clock, latest_step_s, state, message
            async for msg in iter_messages(ws):
                if isinstance(msg, asr.Word):
                    if msg.text == "":  # Unmute skips these
                        continue
                    word = TranscriptWord(msg.text, msg.start_time, None, time.monotonic())
                    run.heard.append(HeardWord(word, len(run.handovers), latest_step_s))
                    if state != "user_speaking":  # a new user message (after the bot: a barge-in)
                        message = []
                        state = "user_speaking"
                        pause.value = 0.0
                    message.append(msg.text)
                elif isinstance(msg, asr.EndWord) and run.heard:
                    run.heard[-1].word.stop_s = msg.stop_time
                elif isinstance(msg, asr.Step):
                    run.steps += 1
                    clock += FRAME_TIME_S
                    latest_step_s = max(latest_step_s, (msg.step_idx + 1) * FRAME_TIME_S)
                    pause.on_step(msg.prs)
                elif isinstance(msg, asr.Marker) and msg.id == CLOSING_MARKER_ID:
                    marker_back.set()
                    return
                elif isinstance(msg, ErrorMessage):
                    raise server_error(msg.message)

        receiver = asyncio.create_task(receive())
        flush_end: float | None = None
        marker_sent = False
        audio_done_at: float | None = None
        deadline = time.monotonic()
        k = sent_frames = 0  # frames of the user's audio, frames in the stream
        try:
            while not marker_back.is_set():
                if receiver.done():
                    receiver.result()  # raises what ended it
                    raise RuntimeError("the server closed the stream before the marker")
                frame = (
                    audio[k * FRAME_SAMPLES : (k + 1) * FRAME_SAMPLES] if k < n_frames else silence
                )
                await ws.send(audio_message(frame))
                if k < n_frames:
                    run.frame_sent_at.append(time.monotonic())
                    run.frame_stream_s.append(sent_frames * FRAME_TIME_S)
                sent_frames += 1
                k += 1
                # What Unmute's handler does after each microphone frame.
                if flush_end is None:
                    if state == "user_speaking" and pause.value > END_OF_TURN_THRESHOLD:
                        flush_end = clock + STT_DELAY_S
                        for _ in range(FLUSH_FRAMES):
                            await ws.send(audio_message(silence))
                        sent_frames += FLUSH_FRAMES
                elif clock > flush_end:
                    run.handovers.append(Handover(flush_end, " ".join(message), time.monotonic()))
                    state = "bot_speaking"
                    flush_end = None
                if k >= n_frames and not marker_sent:
                    audio_done_at = audio_done_at or time.monotonic()
                    # Handed over, and the Steps say every word before the end is out (the last
                    # words may have been in a turn handed over before the end of speech).
                    handed_over = state == "bot_speaking" and flush_end is None
                    heard_end = clock >= run.stream_time_s(audio_end_s)
                    if (handed_over and heard_end) or time.monotonic() - audio_done_at > max_wait_s:
                        await ws.send(marker_message(CLOSING_MARKER_ID))
                        marker_sent = True
                if audio_done_at and time.monotonic() - audio_done_at > max_wait_s + 30:
                    raise TimeoutError("the closing marker did not come back")
                deadline += FRAME_TIME_S
                await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            if not receiver.done():
                receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
    return run


def _main() -> int:
    from parley.audio.decode import decode_file
    from parley.bench.eval_clips import english_clips, speech_end_s
    from parley.bench.wer import wer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="ws://127.0.0.1:8080")
    parser.add_argument("--api-key", default="public_token")
    parser.add_argument("--eval-dir", default="../shared/eval")
    parser.add_argument("--max-duration-s", type=float, default=12.0)
    args = parser.parse_args()
    url = args.url.rstrip("/")
    if not url.endswith("/api/asr-streaming"):
        url += "/api/asr-streaming"
    clips = english_clips(args.eval_dir, max_duration_s=args.max_duration_s)
    refs, turns, alls, latencies, missing = [], [], [], [], 0
    for clip in clips:
        pcm = decode_file(clip.path.read_bytes(), SAMPLE_RATE_HZ)
        end = speech_end_s(pcm)
        run = asyncio.run(converse(url, pcm, api_key=args.api_key, speech_end_s=end))
        latency = run.handover_latency_s(end)
        late = run.late()
        missing += bool(late)
        refs.append(clip.reference)
        turns.append(run.turn_text)
        alls.append(run.all_text)
        if latency is not None:
            latencies.append(latency)
        shown = "none" if latency is None else f"{latency:.2f}s"
        print(
            f"{clip.id:28} turns {len(run.handovers)} handover {shown:>6} "
            f"late: {' '.join(w.text for w in late) or '-'}",
            flush=True,
        )
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    print(
        f"{len(clips)} clips: turn WER {wer(refs, turns):.3f}, all words {wer(refs, alls):.3f}; "
        f"{missing} clips with late words; end of speech -> handover p50 "
        f"{np.percentile(lat, 50):.2f}s p95 {np.percentile(lat, 95):.2f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
