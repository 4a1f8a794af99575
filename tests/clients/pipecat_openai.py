"""pipecat-ai's `OpenAITTSService` and `OpenAISTTService`, default models, `base_url` = Parley.

Run with the pipecat client venv's python:
    pipecat_openai.py tts BASE_URL TEXT OUT_FILE   -> JSON {sample_rate, num_channels, samples}
    pipecat_openai.py stt BASE_URL WAV_FILE...     -> JSON {texts, errors}
The key comes from OPENAI_API_KEY (the SDK's variable; the services take `api_key=None`).
Each service runs in a pipeline (`Pipeline`, `PipelineWorker`, `WorkerRunner`) with a sink that
collects frames. TTS: a `TTSSpeakFrame`, then `EndFrame`. STT (a segmented service, cut by VAD
events), per WAV: `VADUserStartedSpeakingFrame`, the WAV as 20 ms `InputAudioRawFrame`s, then
`VADUserStoppedSpeakingFrame`, as a transport with a VAD analyser sends them; then `EndFrame`.
Errors reach the worker's `on_pipeline_error` and go into the JSON.
"""

import asyncio
import wave
from collections.abc import Awaitable, Callable

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    InputAudioRawFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.openai.stt import OpenAISTTService
from pipecat.services.openai.tts import OpenAITTSService
from pipecat.workers.runner import WorkerRunner
from speech_driver import run_driver  # beside this script


class Sink(FrameProcessor):
    def __init__(self) -> None:
        super().__init__()
        self.frames: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        self.frames.append(frame)
        await self.push_frame(frame, direction)


async def run(
    service: FrameProcessor,
    frames: list[Frame],
    params: PipelineParams,
    feed: Callable[[PipelineWorker, Sink], Awaitable[None]] | None = None,
) -> dict:
    """`frames`, then `EndFrame`, queued once the pipeline has started; or `feed` queues
    what it likes (and the `EndFrame`)."""
    sink = Sink()
    worker = PipelineWorker(Pipeline([service, sink]), params=params, cancel_on_idle_timeout=False)
    errors: list[str] = []
    started = asyncio.Event()

    @worker.event_handler("on_pipeline_started")
    async def on_started(worker, frame):  # noqa: ANN001
        started.set()

    @worker.event_handler("on_pipeline_error")
    async def on_error(worker, frame):  # noqa: ANN001
        errors.append(str(frame.error))

    async def feed_all() -> None:
        await started.wait()
        if feed is None:
            await worker.queue_frames([*frames, EndFrame()])
        else:
            await feed(worker, sink)

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), feed_all()), timeout=90)
    return {"frames": sink.frames, "errors": errors}


async def tts(base_url: str, text: str, out: str) -> dict:
    service = OpenAITTSService(base_url=base_url)
    result = await run(service, [TTSSpeakFrame(text)], PipelineParams())
    audio = [f for f in result["frames"] if isinstance(f, TTSAudioRawFrame)]
    return {
        "pcm": (out, b"".join(frame.audio for frame in audio)),
        "sample_rate": sorted({f.sample_rate for f in audio}),
        "num_channels": sorted({f.num_channels for f in audio}),
        "samples": sum(len(f.audio) // 2 for f in audio),
        "errors": result["errors"],
    }


async def stt(base_url: str, *wav_paths: str) -> dict:
    frames: list[Frame] = []
    rates = set()
    for path in wav_paths:
        with wave.open(path, "rb") as w:
            rate, pcm = w.getframerate(), w.readframes(w.getnframes())
        rates.add(rate)
        step = 2 * rate // 50  # 20 ms of 16-bit samples
        frames.append(VADUserStartedSpeakingFrame())
        frames += [
            InputAudioRawFrame(audio=pcm[i : i + step], sample_rate=rate, num_channels=1)
            for i in range(0, len(pcm), step)
        ]
        frames.append(VADUserStoppedSpeakingFrame())
    (rate,) = rates
    service = OpenAISTTService(base_url=base_url)
    result = await run(service, frames, PipelineParams(audio_in_sample_rate=rate))
    texts = [f.text for f in result["frames"] if isinstance(f, TranscriptionFrame)]
    return {"texts": texts, "errors": result["errors"]}


if __name__ == "__main__":
    run_driver(tts, stt)
