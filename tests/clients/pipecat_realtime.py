"""pipecat-ai's `OpenAIRealtimeSTTService` (OpenAI's Realtime transcription socket), default
settings (model `gpt-realtime-whisper`, no server-side turn detection: the service commits the
audio buffer on `VADUserStoppedSpeakingFrame`), `base_url` = Parley's `/v1/realtime`.

Run with the pipecat client venv's python:
    pipecat_realtime.py WS_URL SPEED SILENCE_S WAV_FILE...
-> JSON {"events": [[kind, text], ...], "errors": [...]}, kind INTERIM or FINAL in order.
The key comes from OPENAI_API_KEY. The service runs in a pipeline as in pipecat_openai.py. Per
WAV (24 kHz), as a transport with a VAD analyser sends them: `VADUserStartedSpeakingFrame`,
the WAV and SILENCE_S of silence (what the analyser waits before it stops) as 20 ms
`InputAudioRawFrame`s paced at SPEED times real time, `VADUserStoppedSpeakingFrame`.
`EndFrame` follows once a final has come for every WAV (or 30 s have passed).
"""

import asyncio
import json
import os
import sys
import wave

from pipecat.frames.frames import (
    EndFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.services.openai.stt import OpenAIRealtimeSTTService
from pipecat_openai import Sink, run  # beside this script

RATE_HZ = 24_000
FINAL_WAIT_S = 30.0


async def main(url: str, speed: float, silence_s: float, paths: list[str]) -> dict:
    service = OpenAIRealtimeSTTService(api_key=os.environ["OPENAI_API_KEY"], base_url=url)
    missing: list[str] = []

    async def feed(worker: PipelineWorker, sink: Sink) -> None:
        await asyncio.sleep(0.5)  # the service's session.update goes first
        for path in paths:
            with wave.open(path, "rb") as w:
                assert w.getframerate() == RATE_HZ
                pcm = w.readframes(w.getnframes()) + bytes(2 * int(RATE_HZ * silence_s))
            await worker.queue_frames([VADUserStartedSpeakingFrame()])
            step = 2 * RATE_HZ // 50
            for i in range(0, len(pcm), step):
                audio = pcm[i : i + step]
                await worker.queue_frames(
                    [InputAudioRawFrame(audio=audio, sample_rate=RATE_HZ, num_channels=1)]
                )
                await asyncio.sleep(0.02 / speed)
            await worker.queue_frames([VADUserStoppedSpeakingFrame()])
        waited = 0.0
        while sum(isinstance(f, TranscriptionFrame) for f in sink.frames) < len(paths):
            if waited > FINAL_WAIT_S:
                missing.append("not every WAV had its final")
                break
            await asyncio.sleep(0.1)
            waited += 0.1
        await worker.queue_frames([EndFrame()])

    result = await run(service, [], PipelineParams(audio_in_sample_rate=RATE_HZ), feed)
    events = [
        ["INTERIM" if isinstance(f, InterimTranscriptionFrame) else "FINAL", f.text]
        for f in result["frames"]
        if isinstance(f, InterimTranscriptionFrame | TranscriptionFrame)
    ]
    return {"events": events, "errors": result["errors"] + missing}


if __name__ == "__main__":
    url, speed, silence_s, *wavs = sys.argv[1:]
    print(json.dumps(asyncio.run(main(url, float(speed), float(silence_s), wavs))))
