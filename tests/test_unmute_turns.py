"""Kyutai Unmute's turn taking against the real server and the real tiny.en model.

Unmute (`parley.bench.unmute` follows its source) ends the user's turn when `Step.prs[2]`
says pause, flushes with silence, waits until the Steps' stream time passes the flush, and
then hands the user's words to its LLM. That is only right if every word before a Step's time
is out before that Step, as with Kyutai's STT: these tests hold the Whisper backend to it.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from parley.bench.eval_clips import english_clips, speech_end_s
from parley.bench.unmute import FRAME_TIME_S, UnmuteRun, converse
from parley.bench.wer import wer
from parley.client.asr import FRAME_SAMPLES, SttStream
from parley.protocol import asr
from tests.conftest import API_KEY, BATCH_SIZE, EVAL_DIR, Server, load_clip

# Four clips, one Unmute user each, all at once (the test server's four slots): 5-11 s of
# read speech; JFK's long pauses make several turns of one clip.
CLIP_IDS = [
    "ljspeech_LJ001-0001",
    "pocketsphinx_librivox_0870",
    "leopard_test",
    "fasterwhisper_jfk",
]
CLIPS = [c for c in english_clips(EVAL_DIR) if c.id in CLIP_IDS]
TIME_SLACK_S = 0.001  # word times are sent rounded to the millisecond
assert len(CLIPS) == len(CLIP_IDS) <= BATCH_SIZE


@pytest.fixture(scope="module")
def unmute_runs(server: Server) -> list[tuple[UnmuteRun, float]]:
    """Each clip spoken to the server by one Unmute user; with where its speech ends."""
    pcms = [load_clip(c.path) for c in CLIPS]
    ends = [speech_end_s(p) for p in pcms]

    async def run() -> list[UnmuteRun]:
        return await asyncio.gather(
            *(
                converse(server.ws, p, api_key=API_KEY, speech_end_s=e)
                for p, e in zip(pcms, ends, strict=True)
            )
        )

    return list(zip(asyncio.run(run()), ends, strict=True))


def test_unmute_hands_its_llm_every_word_of_the_turn(
    unmute_runs: list[tuple[UnmuteRun, float]],
) -> None:
    """No word arrives after the handover of the turn it was said in, so the turns Unmute
    hands over hold exactly the words the server recognised: turn WER = all-words WER."""
    refs = [c.reference for c in CLIPS]
    for clip, (run, end) in zip(CLIPS, unmute_runs, strict=True):
        late = " ".join(w.text for w in run.late())
        print(
            f"{clip.id}: {len(run.handovers)} turns, speech end -> handover "
            f"{run.handover_latency_s(end)} s; late: {late or '-'}; turns: "
            f"{[h.text for h in run.handovers]}; all: {run.all_text}"
        )
        assert run.all_handed_over(), f"{clip.id}: the last words never reached the LLM"
    turn_wer = wer(refs, [r.turn_text for r, _ in unmute_runs])
    all_wer = wer(refs, [r.all_text for r, _ in unmute_runs])
    print(f"Unmute turn WER {turn_wer:.3f}, all words {all_wer:.3f}")
    assert {
        c.id: [w.text for w in r.late()] for c, (r, _) in zip(CLIPS, unmute_runs, strict=True)
    } == {c.id: [] for c in CLIPS}
    assert turn_wer == all_wer


def test_no_word_starts_before_a_step_already_sent(
    server: Server, unmute_runs: list[tuple[UnmuteRun, float]]
) -> None:
    """A Step for frame i (audio up to (i + 1) * 80 ms) comes after every word starting
    before that time; Steps come one per frame, in order. Checked on the real-time Unmute
    runs, and on a clip sent all at once (the server throttles it: decodes run behind)."""
    for clip, (run, _) in zip(CLIPS, unmute_runs, strict=True):
        early = [
            (h.word.text, h.word.start_s, h.latest_step_s)
            for h in run.heard
            if h.word.start_s < h.latest_step_s - TIME_SLACK_S
        ]
        assert not early, f"{clip.id}: words before Steps already received: {early}"

    clip = next(c for c in english_clips(EVAL_DIR) if c.id == "lhotse_2412-153948-0000")
    pcm = load_clip(clip.path)

    async def fast() -> tuple[list[int], list[tuple[str, float, float]], list[str]]:
        steps: list[int] = []
        early, words = [], []
        async with await SttStream.open(server.http, api_key=API_KEY) as stream:
            await stream.send_audio(pcm)
            await stream.send_audio(np.zeros(FRAME_SAMPLES * 10, np.float32))
            await stream.send_marker(3)
            async for msg in stream:
                if isinstance(msg, asr.Step):
                    steps.append(msg.step_idx)
                elif isinstance(msg, asr.Word):
                    words.append(msg.text)
                    latest_s = (steps[-1] + 1) * FRAME_TIME_S if steps else float("-inf")
                    if msg.start_time < latest_s - TIME_SLACK_S:
                        early.append((msg.text, msg.start_time, latest_s))
                elif isinstance(msg, asr.Marker):
                    break
        return steps, early, words

    steps, early, words = asyncio.run(fast())
    assert wer([clip.reference], [" ".join(words)]) < 0.3
    assert not early, f"words before Steps already received: {early}"
    # Every frame before the marker has had its Step, in order, none dropped.
    frames = int(np.ceil(len(pcm) / FRAME_SAMPLES)) + 10
    assert steps == list(range(len(steps))) and len(steps) >= frames
