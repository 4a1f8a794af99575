"""Kyutai streaming TTS (moshi's `TTSModel`: a delayed-streams LM + Mimi), batched over slots.

The loop of moshi-server's Python TTS module: each slot has a `StateMachine` state whose entries
are the words received so far; `LMGen`'s text hook lets each slot's state machine rewrite the
sampled text token (consume the next word, pad, or end), and its audio hook silences the
codebooks that are still inside the model's delay. A slot steps only while it has enough words
queued ahead (`second_stream_ahead + 1`) or its text is complete; otherwise it is masked out and
counted as a missing-words step. Audio frames start `delay_steps + max_delay` steps into a
stream; each word's `Text` goes out just before the frame where it starts (text step / 12.5 s),
and the stream ends `final_padding` steps after the state machine's end step.

Voice: one voice embedding file per module (the checkpoint was trained with CFG distillation,
so `cfg_coef` is a condition, not batch doubling). `Voice` messages and per-session voice
changes are not supported yet.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parley import metrics
from parley.backends.kyutai.checkpoint import (
    CheckpointFiles,
    load_checkpoint,
    prepare_torch,
    torch_dtype,
)
from parley.backends.tts.piper import Configure, EndOfText, Flush, SpeakText, StreamEnd
from parley.backends.tts.text import normalize_word
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ, Backend
from parley.engine.slots import Slot
from parley.protocol import tts
from parley.protocol.common import ErrorMessage

log = logging.getLogger(__name__)

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
PADDING_BETWEEN = 1  # moshi-server: padding steps after each word, beyond its tokens


@dataclass
class _Stream:
    slot: Slot
    state: Any  # moshi.models.tts.State
    offset: int = 0
    complete: bool = False
    first_word: bool = True
    done: bool = False
    frames_sent: int = 0
    words_seen: int = 0
    pending_words: deque[list[Any]] = field(default_factory=deque)  # [text, start_s, stop_s]


class KyutaiTtsBackend(Backend):
    kind = "KyutaiTts"
    metrics_prefix = "py"

    def __init__(
        self,
        files: CheckpointFiles,
        voice_file: Path,
        voice_name: str,
        batch_size: int,
        device: str = "cpu",
        dtype: str = "float32",
        n_q: int = 24,
        temp: float = 0.6,
        cfg_coef: float = 2.0,
        cpu_threads: int = 1,
        name: str = "tts",
    ) -> None:
        torch = prepare_torch(device, cpu_threads)
        from moshi.models import LMGen
        from moshi.models.tts import TTSModel

        self._torch = torch
        self.files = files
        self.batch_size = batch_size
        self.device = device
        info = load_checkpoint(files)
        n_q = min(n_q, int(info.lm_config["n_q"])) if info.lm_config else n_q
        self.model = TTSModel.from_checkpoint_info(
            info, n_q=n_q, temp=temp, cfg_coef=cfg_coef, device=device,
            dtype=torch_dtype(torch, dtype),
        )  # fmt: skip
        self.machine = self.model.machine
        self.lm, self.mimi = self.model.lm, self.model.mimi
        self.voices = {voice_name: voice_file}
        self.default_voice = voice_name
        # CFG-distilled checkpoints take the coefficient as a condition (no batch doubling).
        distilled = bool(self.model.valid_cfg_conditionings)
        self.model.cfg_coef = 1.0 if distilled else cfg_coef
        attributes = self.model.make_condition_attributes(
            [voice_file], cfg_coef=cfg_coef if distilled else None
        )
        provider = self.lm.condition_provider
        assert provider is not None, "a Kyutai TTS checkpoint has conditioners (voice, cfg)"
        conditions = provider.prepare_and_provide([attributes] * batch_size)
        self._streams: list[_Stream | None] = [None] * batch_size
        self._active = [False] * batch_size
        self.lm_gen = LMGen(
            self.lm,
            temp=temp,
            temp_text=temp,
            cfg_coef=1.0,
            condition_tensors=conditions,
            on_text_hook=self._on_text,
            on_audio_hook=self._on_audio,
            support_out_of_sync=True,
        )
        self.lm_gen.streaming_forever(batch_size)
        self.mimi.streaming_forever(batch_size)
        self._input = torch.full(
            (batch_size, self.lm.n_q - self.lm.dep_q, 1), self.machine.token_ids.zero
        )
        self._to_reset: set[int] = set()
        self._labels = {"module": name}

    def describe(self) -> dict[str, Any]:
        return {
            "voices": sorted(self.voices),
            "default_voice": self.default_voice,
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "model": str(self.files.moshi_weight),
            "device": self.device,
        }

    # --- hooks called inside LMGen.step --------------------------------------------------
    def _on_text(self, text_tokens: Any) -> None:
        out = []
        for b, token in enumerate(text_tokens.tolist()):
            s = self._streams[b]
            if not self._active[b] or s is None:
                out.append(token)
                continue
            new_token, _ = self.machine.process(s.offset, s.state, token)
            out.append(new_token)
        text_tokens[:] = self._torch.tensor(out, dtype=text_tokens.dtype)

    def _on_audio(self, audio_tokens: Any) -> None:
        delays = self.lm_gen.delays_cuda[1 : 1 + self.lm.dep_q]
        state = self.lm_gen._streaming_state
        assert state is not None
        offsets = state.offsets
        silent = offsets[:, None] < delays + self.model.delay_steps
        audio_tokens.masked_fill_(silent, self.machine.token_ids.zero)

    # --- slots ---------------------------------------------------------------------------
    def attach(self, slot: Slot) -> None:
        self._streams[slot.index] = None  # created on the session's Configure
        self._to_reset.add(slot.index)

    def detach(self, index: int) -> None:
        self._streams[index] = None
        self._active[index] = False

    def step(self, slots: Sequence[Slot]) -> bool:
        torch = self._torch
        for slot in slots:
            self._take_inputs(slot)
        if self._to_reset:
            mask = torch.zeros(self.batch_size, dtype=torch.bool)
            mask[list(self._to_reset)] = True
            self.lm_gen.reset_streaming(mask)
            self.mimi.reset_streaming(mask)
            self._to_reset.clear()
        lookahead = self.machine.second_stream_ahead
        for b, s in enumerate(self._streams):
            self._active[b] = bool(
                s is not None and not s.done and _ready(s.state, s.complete, lookahead)
            )
            if s is not None and not s.done and not self._active[b] and s.state.entries:
                metrics.TTS_MISSING_WORDS_STEPS.labels(**self._labels).inc()
        metrics.TTS_TOTAL_STEPS.labels(**self._labels).inc()
        if not any(self._active):
            return False
        metrics.TTS_ACTIVE_STEPS.labels(**self._labels).inc()
        first_audio = self.model.delay_steps + self.lm_gen.max_delay
        audible = [
            self._active[b] and s is not None and s.offset >= first_audio
            for b, s in enumerate(self._streams)
        ]
        with torch.no_grad():
            self.lm_gen.set_exec_mask(torch.tensor(self._active))
            self.mimi.set_exec_mask(torch.tensor(audible))
            frame = self.lm_gen.step(self._input)
            assert frame is not None  # support_out_of_sync: never None
            pcm = self.mimi.decode(frame[:, 1:].clamp(min=0)).float().cpu().numpy()
        for b, s in enumerate(self._streams):
            if s is None or not self._active[b]:
                continue
            self._collect_words(s)
            if audible[b]:
                self._send_frame(s, pcm[b, 0])
            s.offset += 1
            end = s.state.end_step
            if s.complete and end is not None:
                if s.offset >= end + self.model.delay_steps + self.model.final_padding + (
                    self.lm_gen.max_delay
                ):
                    self._finish(s)
        return any(self._active)

    def _take_inputs(self, slot: Slot) -> None:
        s = self._streams[slot.index]
        for item in slot.take_inputs():
            if isinstance(item, Configure):
                if item.voice not in self.voices:
                    slot.emit(ErrorMessage(f"unknown voice {item.voice!r}"))
                    continue
                s = _Stream(slot, self.machine.new_state([]))
                self._streams[slot.index] = s
            elif s is None or s.done:
                continue
            elif isinstance(item, SpeakText):
                self._add_words(s, item.text)
            elif isinstance(item, EndOfText | Flush):
                s.complete = s.complete or isinstance(item, EndOfText)

    def _add_words(self, s: _Stream, text: str) -> None:
        from moshi.models.tts import Entry

        for raw in text.split():
            for word in normalize_word(raw):
                tokens = self.model.tokenizer.encode(word)
                if s.first_word:
                    tokens.insert(0, self.machine.token_ids.main)
                    s.first_word = False
                padding = PADDING_BETWEEN + len(tokens) - 1
                s.state.entries.append(Entry(tokens, word, padding=padding))

    def _collect_words(self, s: _Stream) -> None:
        """Words the state machine consumed since the last step, with their times."""
        for word, step in s.state.transcript[s.words_seen :]:
            start_s = round(step * FRAME_S, 3)
            if s.pending_words and s.pending_words[-1][2] is None:
                s.pending_words[-1][2] = start_s
            s.pending_words.append([word, start_s, None])
        s.words_seen = len(s.state.transcript)

    def _send_frame(self, s: _Stream, pcm: np.ndarray) -> None:
        frame_end_s = (s.frames_sent + 1) * FRAME_S
        while s.pending_words and s.pending_words[0][1] < frame_end_s:
            if s.pending_words[0][2] is None and len(s.pending_words) == 1:
                end = s.state.end_step
                if end is None:
                    break  # its end is not known yet; it goes with a later frame
                s.pending_words[0][2] = round(end * FRAME_S, 3)
            text, start_s, stop_s = s.pending_words.popleft()
            s.slot.emit(tts.WordTimes(text, start_s, max(start_s, stop_s)))
        s.slot.emit(tts.Audio(pcm.astype(np.float32, copy=True)))
        s.frames_sent += 1

    def _finish(self, s: _Stream) -> None:
        end = s.state.end_step or s.offset
        for text, start_s, stop_s in s.pending_words:
            stop = stop_s if stop_s is not None else round(end * FRAME_S, 3)
            s.slot.emit(tts.WordTimes(text, start_s, max(start_s, stop)))
        s.pending_words.clear()
        s.slot.emit(StreamEnd())
        s.done = True


def _ready(state: Any, complete: bool, lookahead: int) -> bool:
    """moshi-server's rule: step only with enough words queued ahead, or at a pause, or when
    the client has sent all its text."""
    if complete:
        return True
    if not state.entries:
        return False
    if not state.entries[0].tokens:
        return True
    return sum(1 for e in state.entries if e.tokens) >= lookahead + 1


def voice_name(path: Path) -> str:
    """The name clients use for a voice file: without `.safetensors` and the model's
    `.{signature}@{epoch}` suffix (Kyutai's `expresso/...334s.wav.1e68beda@240.safetensors` is
    asked for as `...334s.wav`)."""
    import re

    name = path.name.removesuffix(".safetensors")
    return re.sub(r"\.[0-9a-zA-Z]+@\d+$", "", name)
