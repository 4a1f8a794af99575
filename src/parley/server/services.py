"""One module as every protocol adapter sees it: its slots, its key set, its route options,
and for speech its voice names. The moshi routes, the OpenAI routes, the token socket (and any
new protocol) each take a service; none of them calls into another protocol's routes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from parley.engine.module import Module, Session
from parley.engine.sessions import speak_text
from parley.engine.speech import SpeechBackend
from parley.protocol.common import ProtocolError
from parley.server.auth import Keys
from parley.server.json_body import MAX_REQUEST_TEXT_CHARS
from parley.server.route_options import RecognitionRouteOptions, SpeechRouteOptions
from parley.server.voice_names import UnknownVoice, VoiceNames


@dataclass
class RecognitionService:
    module: Module
    keys: Keys
    options: RecognitionRouteOptions

    async def wait_for_slot(self) -> Session:
        """A session for a one-shot request, waiting up to `post_timeout_s` (NoFreeSlot)."""
        return await self.module.acquire(float(self.options.post_timeout_s))


@dataclass
class SpeechService:
    module: Module
    keys: Keys
    options: SpeechRouteOptions
    backend: SpeechBackend = field(init=False)
    voice_names: VoiceNames = field(init=False)

    def __post_init__(self) -> None:
        backend = self.module.backend
        if not isinstance(backend, SpeechBackend):
            raise TypeError(f"module {self.module.info.name} is not a text-to-speech module")
        self.backend = backend
        self.voice_names = VoiceNames(
            backend.voices, backend.default_voice, self.options.voice_aliases
        )

    def check_voice(self, voice: str | None) -> str:
        """The configured voice `voice` names (see voice_names), or ProtocolError."""
        try:
            return self.voice_names.resolve(voice)
        except UnknownVoice as exc:
            raise ProtocolError(str(exc)) from None

    async def speak(self, text: str, voice: str | None) -> Session:
        """A session speaking all of `text`, waiting up to `post_timeout_s` for a slot;
        ProtocolError (unknown voice, text too long) or NoFreeSlot if not."""
        name = self.check_voice(voice)
        if len(text) > MAX_REQUEST_TEXT_CHARS:
            raise ProtocolError(f"text over {MAX_REQUEST_TEXT_CHARS} characters")
        session = await self.module.acquire(float(self.options.post_timeout_s))
        speak_text(session, name, text)
        return session
