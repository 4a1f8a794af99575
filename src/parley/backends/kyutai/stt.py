"""Kyutai streaming STT (moshi's Mimi + `LMGen`), stepped for the whole slot table at once.

Every tick, each slot with a full 80 ms frame contributes it; the others are masked out with
moshi's exec masks (their streaming state does not move). Mimi encodes the batch, `LMGen` steps
it greedily, and each slot's text token is turned into words: a piece starting with `▁` starts a
word, padding (3) or end-of-padding (0) after pieces ends it. Times are stream seconds minus the
model's delay (`stt_config.audio_delay_seconds`); a `Marker` comes back once the slot has run the
model delay past the audio sent before it. `Step.prs` are the model's extra heads (Kyutai's
semantic VAD) when it has them. A slot taken by a new session is reset (`reset_streaming` with a
per-slot mask), so it starts from a clean state.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from parley.backends.kyutai.checkpoint import (
    CheckpointFiles,
    CheckpointOptions,
    find_files,
    load_models,
)
from parley.backends.kyutai.streams import MoshiRows
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.engine.messages import Ready
from parley.engine.options import BackendType, option
from parley.engine.recognition import Audio, EndWord, Marker, RecognitionBackend, Step, Word
from parley.engine.slots import Slot

log = logging.getLogger(__name__)

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
EPAD, PAD = 0, 3  # text tokens: end of padding (a word follows), padding


@dataclass
class _Word:
    pieces: list[str]
    start_s: float


@dataclass
class _SlotState:
    slot: Slot
    pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    samples_in: int = 0
    steps: int = 0
    word: _Word | None = None
    markers: deque[tuple[int, int]] = field(default_factory=deque)  # (due step, id)


class KyutaiSttBackend(MoshiRows, RecognitionBackend):
    attribution = ("Kyutai", "https://github.com/kyutai-labs/delayed-streams-modeling")
    languages = ("en", "fr")  # stt-1b-en_fr's (stt-2.6b-en: English only)

    def __init__(
        self,
        files: CheckpointFiles,
        batch_size: int,
        device: str = "cpu",
        dtype: str = "float32",
        delay_tokens: int | None = None,
        cpu_threads: int = 1,
    ) -> None:
        models = load_models(files, device, dtype, cpu_threads)
        import torch
        from moshi.models.lm import LMGen

        self.files = files
        self.device = device
        self.mimi, self.lm, self.tokenizer = models.mimi, models.lm, models.tokenizer
        info = models.info
        self.lm_gen = LMGen(self.lm, temp=0.0, temp_text=0.0, support_out_of_sync=True)
        stt = info.stt_config or {}
        self.delay_s = float(stt.get("audio_delay_seconds", 0.0))
        self.delay_tokens = delay_tokens if delay_tokens is not None else int(self.delay_s * 12.5)
        self._start_streaming(torch, batch_size)
        self._slots: list[_SlotState | None] = [None] * batch_size

    def describe(self) -> dict[str, Any]:
        return {
            "model": str(self.files.moshi_weight),
            "device": self.device,
            "delay_s": self.delay_s,
            "delay_tokens": self.delay_tokens,  # markers wait this many steps past their audio
            "extra_heads": len(getattr(self.lm, "extra_heads", [])),
        }

    def warmup(self) -> None:
        every = self._torch.ones(self.batch_size, dtype=self._torch.bool)
        for _ in range(3):
            self._run(np.zeros((self.batch_size, FRAME_SAMPLES), np.float32), every)
        self._reset_all()

    def attach(self, slot: Slot) -> None:
        self._slots[slot.index] = _SlotState(slot)
        self._reset_later(slot.index)
        slot.emit(Ready())

    def detach(self, index: int) -> None:
        self._slots[index] = None

    # --- the tick --------------------------------------------------------------------------
    def step(self, slots: Sequence[Slot]) -> bool:
        for slot in slots:
            st = self._slots[slot.index]
            if st is None:
                continue
            for item in slot.take_inputs():
                if isinstance(item, Audio):
                    st.pcm = np.concatenate([st.pcm, item.pcm.astype(np.float32, copy=False)])
                    st.samples_in += item.pcm.size
                elif isinstance(item, Marker):
                    sent_frames = math.ceil(st.samples_in / FRAME_SAMPLES)
                    st.markers.append((sent_frames + self.delay_tokens + 1, item.id))
        for st in self._slots:
            if st is not None and st.markers and len(st.pcm) < FRAME_SAMPLES:
                # A marker flushes: silence carries the last words through the model's delay
                # (moshi-server's POST sends 10 s of it; WebSocket clients send their own).
                st.pcm = np.concatenate([st.pcm, np.zeros(FRAME_SAMPLES - len(st.pcm), np.float32)])
        ready = [s for s in self._slots if s is not None and len(s.pcm) >= FRAME_SAMPLES]
        self._apply_resets()
        if not ready:
            return False
        tokens, heads = self._run(*self._take_frames(ready))
        for s in ready:
            self._after_step(s, tokens, heads)
        return any(len(s.pcm) >= FRAME_SAMPLES or s.markers for s in ready)

    def _run(self, frames: np.ndarray, exec_mask: Any) -> tuple[list[int], list[list[float]]]:
        torch = self._torch
        with torch.no_grad():
            self.mimi.set_exec_mask(exec_mask)
            self.lm_gen.set_exec_mask(exec_mask)
            pcm = torch.from_numpy(frames).to(self.device)[:, None, :]
            codes = self.mimi.encode(pcm)
            out = self.lm_gen.step_with_extra_heads(codes)
        if out is None:
            return [PAD] * self.batch_size, []
        text, extra = out
        tokens = [int(t) for t in text[:, 0, 0].tolist()]
        heads = [[float(p) for p in h[:, 0, 0].float().tolist()] for h in extra]
        return tokens, heads

    def _after_step(self, s: _SlotState, tokens: list[int], heads: list[list[float]]) -> None:
        b = s.slot.index
        s.steps += 1
        now_s = max(0.0, s.steps * FRAME_S - self.delay_s)
        token = tokens[b]
        if token > PAD and token < self.tokenizer.vocab_size():
            piece = self.tokenizer.id_to_piece(token)
            if s.word is not None and piece.startswith("▁"):
                self._end_word(s, now_s)
            if s.word is None:
                s.word = _Word([piece], now_s)
            else:
                s.word.pieces.append(piece)
        elif token in (EPAD, PAD) and s.word is not None:
            self._end_word(s, now_s)
        prs = [h[b] for h in heads]
        s.slot.emit(Step(s.steps - 1, prs, len(s.pcm)))
        while s.markers and s.markers[0][0] <= s.steps:
            if s.word is not None:
                self._end_word(s, now_s)
            s.slot.emit(Marker(s.markers.popleft()[1]))

    def _end_word(self, s: _SlotState, stop_s: float) -> None:
        assert s.word is not None
        text = "".join(s.word.pieces).replace("▁", " ").strip()
        if text:
            s.slot.emit(Word(text, round(s.word.start_s, 3)))
            s.slot.emit(EndWord(round(max(stop_s, s.word.start_s), 3)))
        s.word = None


@dataclass
class KyutaiSttOptions(CheckpointOptions):
    asr_delay_in_tokens: int = option(-1, "-1: from the checkpoint's stt_config")


def build(name: str, batch_size: int, o: KyutaiSttOptions) -> KyutaiSttBackend:
    files = find_files(vars(o))
    log.info(
        "module %s: loading Kyutai STT %s (Mimi %s) on %s, %s",
        name,
        files.moshi_weight,
        files.mimi_weight,
        o.device,
        o.dtype,
    )
    delay = o.asr_delay_in_tokens
    return KyutaiSttBackend(
        files,
        batch_size,
        device=o.device,
        dtype=o.dtype,
        delay_tokens=None if delay < 0 else delay,
        cpu_threads=o.cpu_threads,
    )


KYUTAI_STT = BackendType("KyutaiStt", "recognition", "/api/asr-streaming", KyutaiSttOptions, build)
