"""VoiceMode (PyPI `voice-mode`, seed 002's project): its own TTS and STT functions.

Run with the voicemode client venv's python, configured only by VOICEMODE_TTS_BASE_URLS and
VOICEMODE_STT_BASE_URLS (everything else is VoiceMode's default: voice `af_sky`, model `tts-1`,
PCM, STT model `whisper-1`, language `auto`, key `dummy-key-for-local`). HOME is a fresh folder
whose `.asoundrc` makes ALSA's default device the `null` plugin, so playback goes nowhere.
    voicemode_client.py tts TEXT OUT_FILE   -> JSON {played, sample_rate, samples}
    voicemode_client.py stt WAV_FILE...     -> JSON [{text, provider} or {error_type, ...}]
TTS: `text_to_speech_with_failover` (synthesise and play, what `converse` speaks with), then
`synthesize_turn_with_failover` (the same request, decoded samples handed back) for the audio,
written to OUT_FILE as float32. STT: `speech_to_text` on the WAV's 16-bit samples, as
`converse` calls it on a recording.
"""

import asyncio
import json
import sys
import wave

import numpy as np
from voice_mode.tools.converse import (
    speech_to_text,
    synthesize_turn_with_failover,
    text_to_speech_with_failover,
)


async def tts(text: str, out: str) -> dict:
    played, play_metrics, play_config = await text_to_speech_with_failover(text)
    ok, samples, rate, _, config = await synthesize_turn_with_failover(text)
    if ok:
        np.asarray(samples, dtype="<f4").tofile(out)
    return {
        "played": played,
        "play_config": play_config,
        "play_metrics": play_metrics,
        "synthesized": ok,
        "config": config,
        "sample_rate": rate,
        "samples": 0 if samples is None else len(samples),
        "shape": None if samples is None else list(np.shape(samples)),
    }


async def stt(*wav_paths: str) -> list[dict]:
    results = []
    for path in wav_paths:
        with wave.open(path, "rb") as w:
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        results.append(await speech_to_text(audio) or {})
    return results


def main() -> None:
    mode, *rest = sys.argv[1:]
    result = asyncio.run(tts(*rest) if mode == "tts" else stt(*rest))
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
