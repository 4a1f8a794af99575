"""Recognition sessions (speech to text): what every STT backend takes and gives.

In: `Audio` (24 kHz float32, any length), `Marker`. Out: `Ready`, `Word` then its `EndWord`,
one `Step` per 80 ms frame, `Marker` back once all audio before it is processed and its words
sent, `ErrorMessage`. These are moshi-server's recognition events, so its protocol encodes them
as they are; other protocols (OpenAI) translate them. Times: seconds of stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from parley.engine.backend import Backend
from parley.engine.messages import ErrorMessage, Ready


# --- in ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Audio:
    pcm: np.ndarray  # float32 samples at 24 kHz


@dataclass(frozen=True)
class Marker:
    """In: a point in the stream; out: that point is reached and its words are sent."""

    id: int


# --- out -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Word:
    text: str
    start_time: float  # seconds from stream start (moshi's field name)


@dataclass(frozen=True)
class EndWord:
    stop_time: float  # seconds from stream start; ends the last Word


@dataclass(frozen=True)
class Step:
    step_idx: int
    prs: list[float] = field(default_factory=list)  # pause probabilities, short to long horizon
    buffered_pcm: int = 0  # samples received but not yet processed


RecognitionInput = Audio | Marker
RecognitionOutput = Ready | Word | EndWord | Step | Marker | ErrorMessage


class RecognitionBackend(Backend):
    """An STT model: sessions of `RecognitionInput` -> `RecognitionOutput`."""

    role = "recognition"
    languages: tuple[str, ...] = ("en",)  # what it transcribes (Wyoming's `info`)
