"""livekit-plugins-openai's `openai.STT(use_realtime=True)`: OpenAI's Realtime transcription
socket, default model and turn detection, `base_url` = Parley.

Run with the livekit client venv's python:
    livekit_realtime.py BASE_URL WAV_FILE SPEED
-> JSON {"events": [[kind, text], ...]}, kind INTERIM or FINAL, in the order they came.
The key comes from OPENAI_API_KEY, as the plugin documents. The WAV (16-bit mono) is pushed
in 20 ms `rtc.AudioFrame`s at SPEED times real time, then 2 s of silence; the stream is closed
once no event has come for 3 s (the last turn has ended by then).
"""

import asyncio
import json
import sys
import wave

from livekit import rtc
from livekit.agents import stt, utils
from livekit.plugins import openai

QUIET_S = 3.0


async def main(base_url: str, path: str, speed: float) -> dict:
    with wave.open(path, "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    pcm += bytes(2 * rate * 2)  # 2 s of silence: the last turn ends
    step = 2 * rate // 50  # 20 ms
    async with utils.http_context.open():
        engine = openai.STT(base_url=base_url, use_realtime=True)
        stream = engine.stream()
        events: list[list[str]] = []
        last_event = asyncio.Event()

        async def receive() -> None:
            async for ev in stream:
                if ev.type == stt.SpeechEventType.INTERIM_TRANSCRIPT:
                    events.append(["INTERIM", ev.alternatives[0].text])
                elif ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                    events.append(["FINAL", ev.alternatives[0].text])
                last_event.set()

        receiver = asyncio.create_task(receive())
        for i in range(0, len(pcm), step):
            chunk = pcm[i : i + step]
            stream.push_frame(rtc.AudioFrame(chunk, rate, 1, len(chunk) // 2))
            await asyncio.sleep(0.02 / speed)
        while True:
            last_event.clear()
            try:
                await asyncio.wait_for(last_event.wait(), QUIET_S)
            except TimeoutError:
                break
        await stream.aclose()
        receiver.cancel()
        await engine.aclose()
    return {"events": events}


if __name__ == "__main__":
    base, wav, speed = sys.argv[1:]
    print(json.dumps(asyncio.run(main(base, wav, float(speed)))))
