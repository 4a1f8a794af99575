"""Streaming voice activity detection with the Silero VAD v6 ONNX model faster-whisper ships.

The model reads 512-sample chunks at 16 kHz (32 ms), each prefixed by the last 64 samples of
the previous chunk, and carries an LSTM state between calls. One `StreamingVad` keeps that
state for one stream; the `onnxruntime` session is shared by every stream of a module.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

VAD_RATE_HZ = 16_000
CHUNK_SAMPLES = 512
CONTEXT_SAMPLES = 64
STATE_SHAPE = (1, 1, 128)


def load_silero_session(threads: int = 1) -> Any:
    import onnxruntime
    from faster_whisper.vad import get_assets_path

    opts = onnxruntime.SessionOptions()
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 4
    path = os.path.join(get_assets_path(), "silero_vad_v6.onnx")
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"], sess_options=opts)


class StreamingVad:
    """Speech probability for each 32 ms chunk of one 16 kHz stream, fed in any sizes."""

    def __init__(self, session: Any) -> None:
        self._session = session
        self.reset()

    def reset(self) -> None:
        self._h = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)

    def feed(self, audio_16k: np.ndarray) -> np.ndarray:
        """Returns one speech probability per complete chunk now available (maybe none)."""
        data = np.concatenate([self._pending, audio_16k.astype(np.float32, copy=False)])
        n_chunks = len(data) // CHUNK_SAMPLES
        self._pending = data[n_chunks * CHUNK_SAMPLES :]
        if n_chunks == 0:
            return np.zeros(0, dtype=np.float32)
        chunks = data[: n_chunks * CHUNK_SAMPLES].reshape(n_chunks, CHUNK_SAMPLES)
        contexts = np.concatenate([self._context[None, :], chunks[:-1, -CONTEXT_SAMPLES:]])
        self._context = chunks[-1, -CONTEXT_SAMPLES:].copy()
        rows = np.concatenate([contexts, chunks], axis=1)
        probs, self._h, self._c = self._session.run(
            None, {"input": rows, "h": self._h, "c": self._c}
        )
        return np.asarray(probs, dtype=np.float32).reshape(-1)
