"""Every model backend by the config's `type` name. Adding a model: one file whose
`BackendType` declares its role, options and build, listed here."""

from __future__ import annotations

from parley.backends.kyutai.chat import MOSHI_CHAT
from parley.backends.kyutai.stt import KYUTAI_STT
from parley.backends.kyutai.tts import KYUTAI_TTS
from parley.backends.stt.whisper import WHISPER
from parley.backends.tts.piper import PIPER
from parley.engine.options import BackendType

BACKEND_TYPES: dict[str, BackendType] = {
    t.name: t for t in (WHISPER, PIPER, KYUTAI_STT, KYUTAI_TTS, MOSHI_CHAT)
}
