"""Voice names clients send, resolved to a configured voice.

Clients written for other servers send that server's names: OpenAI's (`alloy`), Kokoro's
(`af_sky`, VoiceMode's default), Kyutai's voice paths (Unmute's `voices.yaml`). A name is, in
order: a configured voice; a `voice_aliases` key; a `voice_aliases` pattern (`*`, `?`, `[...]`,
e.g. `"unmute-prod-website/*"`); one of the stock OpenAI/Kokoro names, which mean the default
voice. Anything else is an error naming the configured voices: never a silent fallback.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from fnmatch import fnmatchcase

OPENAI_VOICES = (
    "alloy", "ash", "ballad", "coral", "echo", "fable", "nova",
    "onyx", "sage", "shimmer", "verse", "marin", "cedar",
)  # fmt: skip
# Kokoro-82M's English voices (Kokoro-FastAPI and the clients made for it, e.g. VoiceMode).
KOKORO_VOICES = (
    "af_alloy", "af_aoede", "af_bella", "af_heart", "af_jessica", "af_kore", "af_nicole",
    "af_nova", "af_river", "af_sarah", "af_sky", "am_adam", "am_echo", "am_eric", "am_fenrir",
    "am_liam", "am_michael", "am_onyx", "am_puck", "am_santa", "bf_alice", "bf_emma",
    "bf_isabella", "bf_lily", "bm_daniel", "bm_fable", "bm_george", "bm_lewis",
)  # fmt: skip
STOCK_VOICES = frozenset(OPENAI_VOICES + KOKORO_VOICES)
_PATTERN_CHARS = frozenset("*?[")


class UnknownVoice(ValueError):
    pass


class VoiceNames:
    def __init__(
        self, voices: Collection[str], default_voice: str, aliases: Mapping[str, str]
    ) -> None:
        for alias, target in aliases.items():
            if target not in voices:
                known = ", ".join(sorted(voices))
                raise ValueError(f"voice alias {alias!r}: {target!r} is not a voice ({known})")
        self.voices = frozenset(voices)
        self.default_voice = default_voice
        self.aliases = {a: t for a, t in aliases.items() if not _PATTERN_CHARS & set(a)}
        self.patterns = [(a, t) for a, t in aliases.items() if _PATTERN_CHARS & set(a)]

    def resolve(self, name: str | None) -> str:
        """The configured voice `name` stands for; None or "" is the default voice."""
        if not name:
            return self.default_voice
        if name in self.voices:
            return name
        if name in self.aliases:
            return self.aliases[name]
        for pattern, target in self.patterns:
            if fnmatchcase(name, pattern):
                return target
        if name in STOCK_VOICES:
            return self.default_voice
        raise UnknownVoice(
            f"unknown voice {name!r} (known: {', '.join(sorted(self.voices | set(self.aliases)))};"
            " OpenAI's and Kokoro's voice names mean the default voice; map others with"
            " voice_aliases)"
        )

    def alias_table(self) -> dict[str, str]:
        """Every exact name that is not a voice -> the voice it means (patterns left out)."""
        return {v: self.default_voice for v in sorted(STOCK_VOICES)} | self.aliases
