"""Kyutai checkpoints (Mimi + LM + text tokenizer + config.json), found without downloading.

A module names its checkpoint as moshi-server's Python modules do: `hf_repo` (a local directory
holding the repository's files, or a Hugging Face repo id) and optional per-file overrides
(`config_path`, `moshi_weight`, `mimi_weight`, `tokenizer`, `mimi_config_path`), each a local
path or `hf://owner/repo/file`. A repo id is looked up in the local Hugging Face cache only;
files are fetched from the hub only for an explicit `hf://` (and only if it is reachable). A
missing file is an error that names it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from parley.engine.options import at_least, one_of, option


class CheckpointError(ValueError):
    pass


@dataclass
class CheckpointOptions:
    """The config keys every Kyutai module has (moshi-server's Python-module keys)."""

    hf_repo: str = option("", "a local directory, or a repo id found in the local HF cache")
    config_path: str = option("", "override: a local file, or hf://owner/repo/file")
    moshi_weight: str = option("", "override: a local file, or hf://owner/repo/file")
    mimi_weight: str = option("", "override: a local file, or hf://owner/repo/file")
    tokenizer: str = option("", "override: a local file, or hf://owner/repo/file")
    mimi_config_path: str = option("", "override: a local file, or hf://owner/repo/file")
    device: str = option("cpu", '"cuda" with a CUDA build of torch')
    dtype: str = option("float32", "weights' dtype", one_of("float32", "bfloat16"))
    cpu_threads: int = option(1, "torch threads on CPU", at_least(1))

    def problems(self) -> list[tuple[str, str]]:
        if self.hf_repo or self.config_path:
            return []
        return [("hf_repo", "required (or config_path and the files)")]


@dataclass(frozen=True)
class CheckpointFiles:
    config: Path
    moshi_weight: Path
    mimi_weight: Path
    tokenizer: Path
    mimi_config: Path | None


def _fetch(repo: str, filename: str, allow_download: bool, what: str) -> Path:
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo, filename, local_files_only=not allow_download))
    except Exception as exc:
        how = "downloading it" if allow_download else "the local Hugging Face cache (no download)"
        raise CheckpointError(f"{what}: {repo}/{filename} not found via {how}: {exc}") from None


def _resolve(value: str, what: str) -> Path:
    """A local path, or `hf://owner/repo/file` (downloaded if the hub is reachable)."""
    if value.startswith("hf://"):
        parts = value.removeprefix("hf://").split("/")
        if len(parts) < 3:
            raise CheckpointError(f"{what}: {value!r} is not hf://owner/repo/file")
        return _fetch("/".join(parts[:2]), "/".join(parts[2:]), True, what)
    path = Path(value).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what}: file {path} does not exist")
    return path


def find_files(options: dict[str, Any]) -> CheckpointFiles:
    """The checkpoint's files from a module's options (see the module docstring)."""
    repo = str(options.get("hf_repo") or "")
    allow_download = repo.startswith("hf://")
    repo_id = repo.removeprefix("hf://")
    local_dir: Path | None = None
    if repo and not allow_download:
        if Path(repo).expanduser().is_dir():
            local_dir, repo_id = Path(repo).expanduser(), ""
        elif repo.startswith(("/", ".", "~")):
            raise CheckpointError(f"hf_repo: directory {Path(repo).expanduser()} does not exist")

    def in_repo(filename: str, what: str) -> Path:
        if local_dir is not None:
            path = local_dir / filename
            if not path.is_file():
                raise CheckpointError(f"{what}: file {path} does not exist")
            return path
        if not repo_id:
            raise CheckpointError(f"{what}: no file given and no hf_repo to find it in")
        return _fetch(repo_id, filename, allow_download, what)

    config = (
        _resolve(options["config_path"], "config_path")
        if options.get("config_path")
        else in_repo("config.json", "config_path")
    )
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"config_path: {config} is not a JSON file: {exc}") from None

    def pick(option: str, config_key: str, default_name: str | None) -> Path | None:
        if options.get(option):
            return _resolve(str(options[option]), option)
        name = raw.get(config_key, default_name)
        return None if name is None else in_repo(str(name), option)

    moshi_weight = pick("moshi_weight", "moshi_name", "model.safetensors")
    mimi_weight = pick("mimi_weight", "mimi_name", None)
    tokenizer = pick("tokenizer", "tokenizer_name", None)
    mimi_config = pick("mimi_config_path", "mimi_config_name", None)
    for value, key in ((mimi_weight, "mimi_weight"), (tokenizer, "tokenizer")):
        if value is None:
            raise CheckpointError(f"{key}: not in {config} and not given in the config")
    assert moshi_weight is not None and mimi_weight is not None and tokenizer is not None
    return CheckpointFiles(config, moshi_weight, mimi_weight, tokenizer, mimi_config)


def load_checkpoint(files: CheckpointFiles) -> Any:
    """moshi's own `CheckpointInfo`, built from local files only."""
    from moshi.models.loaders import CheckpointInfo

    return CheckpointInfo.from_hf_repo(
        "local",  # unused: every file below is a local path
        moshi_weights=files.moshi_weight,
        mimi_weights=files.mimi_weight,
        tokenizer=files.tokenizer,
        config_path=files.config,
        mimi_config_path=files.mimi_config,
    )


@dataclass
class LoadedModels:
    info: Any  # moshi's CheckpointInfo
    mimi: Any
    lm: Any
    tokenizer: Any


def prepare_torch(device: str, cpu_threads: int) -> Any:
    """torch, set up for moshi on `device`; call before moshi is imported."""
    import os

    if device == "cpu":
        # moshi compiles small kernels with torch.compile on first use: seconds of start-up and
        # no gain for CPU inference.
        os.environ.setdefault("NO_TORCH_COMPILE", "1")
    import torch

    if device == "cpu":
        torch.set_num_threads(cpu_threads)
    return torch


def torch_dtype(torch: Any, dtype: str) -> Any:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def load_models(files: CheckpointFiles, device: str, dtype: str, cpu_threads: int) -> LoadedModels:
    """Mimi, the LM and the text tokenizer of a checkpoint, ready for streaming."""
    torch = prepare_torch(device, cpu_threads)
    info = load_checkpoint(files)
    return LoadedModels(
        info,
        info.get_mimi(device=device),
        info.get_moshi(device=device, dtype=torch_dtype(torch, dtype)),
        info.get_text_tokenizer(),
    )
