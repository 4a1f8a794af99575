"""Prometheus metrics, with moshi-server's names where it has one.

Engine metrics come in one family per module kind, named by moshi-server's prefixes: `asr_*`
for speech-to-text modules, `py_*` for text-to-speech ones (moshi-server runs its TTS through a
Python module, hence `py`). Every series carries the module's name as a label.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

_STEP_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


@dataclass(frozen=True)
class EngineMetrics:
    connections: Counter
    open_channels: Gauge
    step_duration: Histogram
    steps: Counter
    late_steps: Counter
    errors: Counter


_families: dict[str, EngineMetrics] = {}


def engine(prefix: str) -> EngineMetrics:
    """The engine metrics of modules whose names start with `prefix` (`asr` or `py`)."""
    if prefix not in _families:
        _families[prefix] = EngineMetrics(
            connections=Counter(
                f"{prefix}_connect", "Sessions opened (WebSockets; Wyoming requests)", ["module"]
            ),
            open_channels=Gauge(f"{prefix}_open_channels", "Slots in use", ["module"]),
            step_duration=Histogram(
                f"{prefix}_model_step_duration",
                "Model-thread step time (s)",
                ["module"],
                buckets=_STEP_BUCKETS_S,
            ),
            steps=Counter(f"{prefix}_model_steps", "Model-thread steps", ["module"]),
            late_steps=Counter(
                f"{prefix}_late_steps", "Steps that took longer than one 80 ms frame", ["module"]
            ),
            errors=Counter(f"{prefix}_client_errors", "Errors sent to clients", ["module", "kind"]),
        )
    return _families[prefix]


# --- speech-to-text (Whisper) --------------------------------------------------------------
WORDS = Counter("asr_words", "Words sent to clients", ["module"])
DECODE_DURATION = Histogram(
    "asr_decode_duration",
    "Whisper batched decode time (s)",
    ["module"],
    buckets=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0),
)
DECODE_BATCH = Histogram(
    "asr_decode_batch_size",
    "Windows per Whisper decode call",
    ["module"],
    buckets=(1, 2, 3, 4, 6, 8),
)
DECODE_RETRIES = Counter(
    "asr_decode_full_context_retries", "Short-context decodes redone on 30 s", ["module"]
)
TENTATIVE_FINALS = Counter(
    "asr_tentative_finals",
    "Windows decoded early in a pause: taken as the final (taken=true) or, speech having "
    "resumed, as a re-decode",
    ["module", "taken"],
)

# --- text-to-speech (Piper) ----------------------------------------------------------------
TTS_TOTAL_STEPS = Counter("py_total_steps", "TTS model-thread steps", ["module"])
TTS_ACTIVE_STEPS = Counter("py_active_steps", "TTS steps that synthesised a phrase", ["module"])
TTS_MISSING_WORDS_STEPS = Counter(
    "py_missing_words_steps",
    "Per-stream steps with nothing to synthesise because the client had not sent enough words",
    ["module"],
)
TTS_COULD_HAVE_RUN_STEPS = Counter(
    "py_could_have_run_steps", "Per-stream steps with a phrase ready or audio ahead", ["module"]
)
TTS_PHRASE_DURATION = Histogram(
    "py_phrase_synthesis_duration",
    "Time to synthesise one phrase (s)",
    ["module"],
    buckets=(0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0),
)
TTS_AUDIO_SECONDS = Counter("py_audio_seconds", "Seconds of audio synthesised", ["module"])
