"""pipecat-ai's `OpenAIRealtimeSTTService` (OpenAI's Realtime transcription socket), default
settings (model `gpt-realtime-whisper`, no server-side turn detection: the service commits the
audio buffer on `VADUserStoppedSpeakingFrame`), `base_url` = Parley's `/v1/realtime`.

Run with the pipecat client venv's python:
    pipecat_realtime.py WS_URL SPEED SILENCE_S WAV_FILE...
-> JSON {"events": [[kind, text], ...], "errors": [...]}, kind INTERIM or FINAL in order.
Per WAV, as a transport with a VAD analyser sends them: `VADUserStartedSpeakingFrame`, the WAV
and SILENCE_S of silence as 20 ms `InputAudioRawFrame`s paced at SPEED times real time (the
silence a VAD analyser waits before it stops), `VADUserStoppedSpeakingFrame`.
`EndFrame` follows once a final has come for every WAV (or 30 s have passed).
"""

import asyncio
import json
import os
import sys
import wave

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    TranscriptionFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.stt import OpenAIRealtimeSTTService
from pipecat.workers.runner import WorkerRunner

FINAL_WAIT_S = 30.0


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[list[str]] = []
        self.finals = asyncio.Condition()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InterimTranscriptionFrame):
            self.events.append(["INTERIM", frame.text])
        elif isinstance(frame, TranscriptionFrame):
            self.events.append(["FINAL", frame.text])
            async with self.finals:
                self.finals.notify_all()
        await self.push_frame(frame, direction)


async def main(url: str, speed: float, silence_s: float, paths: list[str]) -> dict:
    service = OpenAIRealtimeSTTService(api_key=os.environ["OPENAI_API_KEY"], base_url=url)
    sink = Sink()
    rate = 24_000
    worker = PipelineWorker(
        Pipeline([service, sink]),
        params=PipelineParams(audio_in_sample_rate=rate),
        cancel_on_idle_timeout=False,
    )
    errors: list[str] = []
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):  # noqa: ANN001
        started.set()

    @worker.event_handler("on_pipeline_error")
    async def on_error(worker, frame):  # noqa: ANN001
        errors.append(str(frame.error))

    async def feed() -> None:
        await started.wait()
        await asyncio.sleep(0.5)  # the service's session.update goes first
        for path in paths:
            with wave.open(path, "rb") as w:
                assert w.getframerate() == rate
                pcm = w.readframes(w.getnframes()) + bytes(2 * int(rate * silence_s))
            await worker.queue_frames([VADUserStartedSpeakingFrame()])
            step = 2 * rate // 50
            for i in range(0, len(pcm), step):
                frame = InputAudioRawFrame(
                    audio=pcm[i : i + step], sample_rate=rate, num_channels=1
                )
                await worker.queue_frames([frame])
                await asyncio.sleep(0.02 / speed)
            await worker.queue_frames([VADUserStoppedSpeakingFrame()])

        def all_final() -> bool:
            return sum(kind == "FINAL" for kind, _ in sink.events) >= len(paths)

        async with sink.finals:
            try:
                await asyncio.wait_for(sink.finals.wait_for(all_final), FINAL_WAIT_S)
            except TimeoutError:
                errors.append("not every WAV had its final")
        await worker.queue_frames([EndFrame()])

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), feed()), timeout=120)
    return {"events": sink.events, "errors": errors}


if __name__ == "__main__":
    url, speed, silence_s, *wavs = sys.argv[1:]
    print(json.dumps(asyncio.run(main(url, float(speed), float(silence_s), wavs))))
