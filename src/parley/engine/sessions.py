"""What every protocol does with a whole text or a whole recording, whatever its wire.

Streaming protocols push and receive message by message; one-shot requests (moshi's POSTs, the
OpenAI audio API, Wyoming's non-streaming events) speak a text or recognise a recording and
read the session until it ends. Both use the engine's typed messages only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from parley.engine.messages import ErrorMessage
from parley.engine.module import Session
from parley.engine.recognition import Audio, EndWord, Marker, Word
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    PhraseEnd,
    SpeechConfig,
    SpeechEnd,
    SpokenWord,
    TextPiece,
)


class SynthesisFailed(RuntimeError):
    """The backend reported an error for this session."""


def speak_text(session: Session, voice: str, text: str) -> None:
    """Pushes a whole text, as whole words, then its end."""
    session.push(SpeechConfig(voice))
    for word in text.split():
        session.push(TextPiece(word, whole_words=True))
    session.push(EndOfText())


async def speech_output(session: Session) -> AsyncIterator[AudioFrame | SpokenWord | PhraseEnd]:
    """A speech session's output until its `SpeechEnd`; `SynthesisFailed` on an error."""
    while True:
        msg = await session.receive()
        if isinstance(msg, SpeechEnd):
            return
        if isinstance(msg, ErrorMessage):
            raise SynthesisFailed(msg.message)
        if isinstance(msg, AudioFrame | SpokenWord | PhraseEnd):
            yield msg


async def recognise_recording(
    session: Session, pcm: np.ndarray
) -> AsyncIterator[Word | EndWord | ErrorMessage]:
    """Pushes `pcm` (24 kHz) and a `Marker`; yields `Word`/`EndWord` as they are committed
    until the marker returns (an `ErrorMessage`, if any, is yielded last)."""
    session.push(Audio(pcm))
    session.push(Marker(0))
    while True:
        msg = await session.receive()
        if isinstance(msg, Marker):
            return
        if isinstance(msg, Word | EndWord | ErrorMessage):
            yield msg
            if isinstance(msg, ErrorMessage):
                return
