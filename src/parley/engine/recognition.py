"""Recognition sessions (speech to text): what every STT backend takes and gives.

In: `Audio` (24 kHz float32, any length), `Marker`, `VadSettings`. Out: `Ready`, `Word` then
its `EndWord`, one `Step` per 80 ms frame, `Marker` back once all audio before it is processed
and its words sent, `ErrorMessage`. These are moshi-server's recognition events, so its
protocol encodes them as they are; other protocols (OpenAI) translate them. Times: seconds of
stream.
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


@dataclass(frozen=True)
class VadSettings:
    """In: this session's voice-activity settings, in place of the module's (OpenAI Realtime's
    `server_vad`). A backend applies those it has and ignores the rest; one without a VAD
    (Kyutai STT: its end-of-turn heads are not tunable) ignores the message."""

    threshold: float  # speech probability at or above which a frame counts as speech
    endpoint_silence_s: float  # a pause this long ends an utterance


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


RecognitionInput = Audio | Marker | VadSettings
RecognitionOutput = Ready | Word | EndWord | Step | Marker | ErrorMessage


class RecognitionBackend(Backend):
    """An STT model: sessions of `RecognitionInput` -> `RecognitionOutput`."""

    role = "recognition"
    languages: tuple[str, ...] = ("en",)  # what it transcribes (Wyoming's `info`)
