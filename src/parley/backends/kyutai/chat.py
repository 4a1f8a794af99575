"""Moshi full-duplex speech-to-speech (seed 003), batched across slots.

Per 80 ms tick, every slot holding a frame of the user's audio runs: Mimi encodes the batch,
`LMGen` steps it (text token + Moshi's audio codes), Mimi decodes Moshi's codes back to audio.
Slots without a frame are masked out with moshi's exec masks, so their streams stand still.
As in moshi's own server, a session's first frame is encoded and then the encoder state is
reset (that frame is "in the past" for the model). During the model's initial delay `LMGen`
returns no codes for a slot (-2); those slots are masked out of decoding.
moshi's Python server serves one user at a time behind a lock; here `batch_size` users share
each model step.
"""

from __future__ import annotations

import logging
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
from parley.engine.backend import FRAME_SAMPLES
from parley.engine.chat import ChatAudio, ChatBackend, ChatText, UserAudio
from parley.engine.options import BackendType, option
from parley.engine.slots import Slot

log = logging.getLogger(__name__)

EPAD, PAD = 0, 3  # text tokens that are not text


@dataclass
class _Chat:
    slot: Slot
    pcm: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    frames: int = 0


class MoshiChatBackend(MoshiRows, ChatBackend):
    metrics_prefix = "chat"

    def __init__(
        self,
        files: CheckpointFiles,
        batch_size: int,
        device: str = "cpu",
        dtype: str = "float32",
        temp: float = 0.8,
        temp_text: float = 0.7,
        cpu_threads: int = 1,
    ) -> None:
        models = load_models(files, device, dtype, cpu_threads)
        import torch
        from moshi.models.lm import LMGen

        self.files = files
        self.device = device
        self.mimi, self.lm, self.tokenizer = models.mimi, models.lm, models.tokenizer
        self.lm_gen = LMGen(self.lm, temp=temp, temp_text=temp_text, support_out_of_sync=True)
        self.dep_q = self.lm.dep_q
        self.user_codebooks = self.lm.num_codebooks - self.lm.dep_q - 1
        self._start_streaming(torch, batch_size)
        self._chats: list[_Chat | None] = [None] * batch_size

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.files.moshi_weight), "device": self.device}

    def warmup(self) -> None:
        every = self._torch.ones(self.batch_size, dtype=self._torch.bool)
        for _ in range(4):
            self._run(np.zeros((self.batch_size, FRAME_SAMPLES), np.float32), every, every)
        self._reset_all()

    def attach(self, slot: Slot) -> None:
        self._chats[slot.index] = _Chat(slot)
        self._reset_later(slot.index)

    def detach(self, index: int) -> None:
        self._chats[index] = None

    def step(self, slots: Sequence[Slot]) -> bool:
        for slot in slots:
            chat = self._chats[slot.index]
            if chat is None:
                continue
            for item in slot.take_inputs():
                if isinstance(item, UserAudio):
                    chat.pcm = np.concatenate([chat.pcm, item.pcm.astype(np.float32, copy=False)])
        self._apply_resets()
        ready = [c for c in self._chats if c is not None and len(c.pcm) >= FRAME_SAMPLES]
        if not ready:
            return False
        first = self._rows(c.slot.index for c in ready if c.frames == 0)
        for c in ready:
            c.frames += 1
        tokens, pcm_out = self._run(*self._take_frames(ready), first)
        for c in ready:
            b = c.slot.index
            frame = pcm_out[b]
            if frame is None:
                continue  # still within the model's initial delay
            c.slot.emit(ChatAudio(frame))
            token = tokens[b]
            if token not in (EPAD, PAD) and 0 <= token < self.tokenizer.vocab_size():
                c.slot.emit(ChatText(self.tokenizer.id_to_piece(token).replace("▁", " ")))
        return any(len(c.pcm) >= FRAME_SAMPLES for c in ready)

    def _run(
        self, frames: np.ndarray, exec_mask: Any, first: Any
    ) -> tuple[list[int], list[np.ndarray | None]]:
        torch = self._torch
        with torch.no_grad():
            self.mimi.set_exec_mask(exec_mask)
            codes = self.mimi.encode(torch.from_numpy(frames).to(self.device)[:, None, :])
            if bool(first.any()):
                # A session's first frame is in the model's past: start its encoder afresh.
                self.mimi.reset_streaming(first)
                self.mimi.set_exec_mask(exec_mask)
            self.lm_gen.set_exec_mask(exec_mask)
            out = self.lm_gen.step(codes[:, : self.user_codebooks])
            if out is None:
                return [PAD] * self.batch_size, [None] * self.batch_size
            audio_codes = out[:, 1 : 1 + self.dep_q]
            valid = exec_mask & (audio_codes >= 0).all(dim=2).all(dim=1)
            if not bool(valid.any()):
                return [PAD] * self.batch_size, [None] * self.batch_size
            self.mimi.set_exec_mask(valid)
            safe = torch.where(valid[:, None, None], audio_codes, torch.zeros_like(audio_codes))
            pcm = self.mimi.decode(safe).float().cpu().numpy()
        tokens = [int(t) for t in out[:, 0, 0].tolist()]
        return tokens, [pcm[b, 0].copy() if bool(valid[b]) else None for b in range(len(tokens))]


@dataclass
class MoshiChatOptions(CheckpointOptions):
    temp: float = option(0.8, "audio sampling temperature")
    temp_text: float = option(0.7, "text sampling temperature")


def build(name: str, batch_size: int, o: MoshiChatOptions) -> MoshiChatBackend:
    files = find_files(vars(o))
    log.info("module %s: loading Moshi %s on %s", name, files.moshi_weight, o.device)
    return MoshiChatBackend(
        files,
        batch_size,
        device=o.device,
        dtype=o.dtype,
        temp=float(o.temp),
        temp_text=float(o.temp_text),
        cpu_threads=o.cpu_threads,
    )


MOSHI_CHAT = BackendType("MoshiChat", "chat", "/api/chat", MoshiChatOptions, build)
