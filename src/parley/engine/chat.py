"""Chat sessions (full-duplex speech to speech, Moshi): the user's audio in, the model's voice
and text out, frame by frame."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from parley.engine.backend import Backend
from parley.engine.messages import ErrorMessage


@dataclass(frozen=True)
class UserAudio:
    pcm: np.ndarray  # 24 kHz float32, any length


@dataclass(frozen=True)
class ChatAudio:
    pcm: np.ndarray  # one 1920-sample frame of the model's voice


@dataclass(frozen=True)
class ChatText:
    piece: str  # a text piece, spaces included


ChatInput = UserAudio
ChatOutput = ChatAudio | ChatText | ErrorMessage


class ChatBackend(Backend):
    """A speech-to-speech model: sessions of `UserAudio` -> `ChatOutput`."""

    role = "chat"
