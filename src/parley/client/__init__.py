"""Python client for a Parley (or moshi-server) voice server.

Async streams (`SttStream`, `TtsStream`, `TokenStream`), whole-input helpers (`transcribe`,
`synthesize`, `speak_tokens`) with `*_sync` wrappers, and the one-shot HTTP calls
(`transcribe_once`, `synthesize_once`). Every error is a `ParleyError`. See docs/CLIENT.md.
"""

from parley.client.asr import (
    SttEvent,
    SttStream,
    Transcript,
    TranscriptWord,
    transcribe,
    transcribe_chunks,
    transcribe_once,
    transcribe_once_sync,
    transcribe_sync,
)
from parley.client.connection import DEFAULT_API_KEY, DEFAULT_URL
from parley.client.errors import (
    NoFreeChannels,
    ParleyError,
    ServerError,
    ServerUnreachable,
    Unauthorized,
)
from parley.client.tokens import TokenSpeech, TokenStream, speak_tokens, speak_tokens_sync
from parley.client.tts import (
    SpeechResult,
    Synthesis,
    TtsStream,
    synthesize,
    synthesize_once,
    synthesize_once_sync,
    synthesize_sync,
)
from parley.engine.speech import SpokenWord
from parley.protocol.asr import EndWord, Marker, Step, Word

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_URL",
    "EndWord",
    "Marker",
    "NoFreeChannels",
    "ParleyError",
    "ServerError",
    "ServerUnreachable",
    "SpeechResult",
    "SpokenWord",
    "Step",
    "SttEvent",
    "SttStream",
    "Synthesis",
    "TokenSpeech",
    "TokenStream",
    "Transcript",
    "TranscriptWord",
    "TtsStream",
    "Unauthorized",
    "Word",
    "speak_tokens",
    "speak_tokens_sync",
    "synthesize",
    "synthesize_once",
    "synthesize_once_sync",
    "synthesize_sync",
    "transcribe",
    "transcribe_chunks",
    "transcribe_once",
    "transcribe_once_sync",
    "transcribe_sync",
]
