"""Speech sessions (text to speech): what every TTS backend takes and gives.

In: `SpeechConfig` first, then `TextPiece`s, `VoiceEmbedding` (backends that take them, before
any text), `Flush`, `EndOfText`. Out: `AudioFrame`s (24 kHz float32, 80 ms each), a
`SpokenWord` just before the frame where the word starts, `PhraseEnd` after a phrase's audio
(when asked for and the backend `marks_phrases`), `SpeechEnd` after the last frame once the
text has ended, or `ErrorMessage`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from parley.engine.backend import Backend
from parley.engine.messages import ErrorMessage

MAX_PITCH_SEMITONES = 12.0


# --- in ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpeechConfig:
    """First item of a session: its voice and delivery."""

    voice: str
    min_pause_words: int = 3  # a pause (",;:") ends a phrase once it has this many words
    # Each phrase's audio whole (its last frame may be short), then `PhraseEnd` (backends
    # with `marks_phrases`). Phrases are then cut only where the text says (punctuation, the
    # length limits, flush): not early to keep a listener fed, nor short for a fast first
    # phrase, since each phrase reaches the client as one clip.
    phrase_ends: bool = False


@dataclass(frozen=True)
class TextPiece:
    text: str
    whole_words: bool  # True: the text is whole words (moshi protocol); False: token pieces
    pitch_semitones: float | None = None  # change of pitch from here on


@dataclass(frozen=True)
class VoiceEmbedding:
    """A session's own voice (Kyutai TTS), before any text."""

    embeddings: np.ndarray
    shape: list[int]


@dataclass(frozen=True)
class Flush:
    """Synthesise everything received so far."""


@dataclass(frozen=True)
class EndOfText:
    """No more text: synthesise the rest, send it, then `SpeechEnd`."""


# --- out -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioFrame:
    pcm: np.ndarray  # 1920 float32 samples at 24 kHz (a phrase's last may be shorter)


@dataclass(frozen=True)
class SpokenWord:
    """A word as it is spoken: seconds of generated audio."""

    text: str
    start_s: float
    stop_s: float


@dataclass(frozen=True)
class PhraseEnd:
    """After the last audio of a phrase, when the session's config asked for it."""


@dataclass(frozen=True)
class SpeechEnd:
    """After the last frame of a session whose text has ended."""


SpeechInput = SpeechConfig | TextPiece | VoiceEmbedding | Flush | EndOfText
SpeechOutput = AudioFrame | SpokenWord | PhraseEnd | SpeechEnd | ErrorMessage


class SpeechBackend(Backend):
    """A TTS model: sessions of `SpeechInput` -> `SpeechOutput`. Routes read these facts
    instead of asking for a backend by name."""

    role = "speech"
    takes_voice_embeddings = False  # accepts VoiceEmbedding
    marks_phrases = False  # honours SpeechConfig.phrase_ends
    voices: Collection[str]  # the configured voice names
    default_voice: str

    def voice_languages(self, voice: str) -> list[str]:
        """The languages `voice` speaks (Wyoming's `info`)."""
        return ["en"]
