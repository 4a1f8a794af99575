"""What the Kyutai backends share: Mimi and `LMGen` streaming over the whole slot table, and
resetting the rows of slots that a new session has taken (moshi's per-row reset masks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from parley.engine.backend import FRAME_SAMPLES, Backend


class MoshiRows(Backend):
    """A backend whose Mimi and `LMGen` keep one streaming row per slot."""

    _torch: Any
    mimi: Any
    lm_gen: Any
    batch_size: int

    def _start_streaming(self, torch: Any, batch_size: int) -> None:
        """Call once `mimi` and `lm_gen` are built."""
        self._torch = torch
        self.batch_size = batch_size
        self.mimi.streaming_forever(batch_size)
        self.lm_gen.streaming_forever(batch_size)
        self._to_reset: set[int] = set()

    def _rows(self, indices: Iterable[int]) -> Any:
        """A boolean mask over the batch, True at `indices`."""
        mask = self._torch.zeros(self.batch_size, dtype=self._torch.bool)
        mask[list(indices)] = True
        return mask

    def _take_frames(self, ready: Sequence[Any]) -> tuple[np.ndarray, Any]:
        """Moves one 80 ms frame from each ready stream's `pcm` into its slot's row; returns
        the batch of frames and the mask of the rows that step."""
        frames = np.zeros((self.batch_size, FRAME_SAMPLES), np.float32)
        for s in ready:
            frames[s.slot.index] = s.pcm[:FRAME_SAMPLES]
            s.pcm = s.pcm[FRAME_SAMPLES:]
        return frames, self._rows(s.slot.index for s in ready)

    def _reset_rows(self, mask: Any) -> None:
        self.mimi.reset_streaming(mask)
        self.lm_gen.reset_streaming(mask)

    def _reset_all(self) -> None:
        self._reset_rows(self._rows(range(self.batch_size)))

    def _reset_later(self, index: int) -> None:
        """A new session took slot `index`: its row starts clean at the next step."""
        self._to_reset.add(index)

    def _apply_resets(self) -> None:
        if self._to_reset:
            self._reset_rows(self._rows(self._to_reset))
            self._to_reset.clear()
