"""Prometheus metrics, with moshi-server's names where it has one (`asr_*`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_STEP_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)

CONNECTIONS = Counter("asr_connect", "WebSocket connections accepted", ["module"])
OPEN_CHANNELS = Gauge("asr_open_channels", "Slots in use", ["module"])
STEP_DURATION = Histogram(
    "asr_model_step_duration", "Model-thread step time (s)", ["module"], buckets=_STEP_BUCKETS_S
)
STEPS = Counter("asr_model_steps", "Model-thread steps", ["module"])
LATE_STEPS = Counter("asr_late_steps", "Steps that took longer than one 80 ms frame", ["module"])
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
ERRORS = Counter("asr_client_errors", "Errors sent to clients", ["module", "kind"])
