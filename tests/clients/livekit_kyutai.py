"""livekit-plugins-kyutai-lasuite's `kyutai.STT` (moshi-server's `/api/asr-streaming` socket).

Run with the livekit client venv's python:
    livekit_kyutai.py WS_URL WAV_FILE...   -> JSON [{text, words, end_of_speech}] per file
The key comes from KYUTAI_API_KEY, as the plugin documents. The WAV (16-bit mono) is pushed as
20 ms `rtc.AudioFrame`s, as a room track delivers them, followed by 2 s of silence so the last
words end; the stream is closed once no event has come for SETTLE_S.
"""

import asyncio
import json
import sys
import time
import wave

import aiohttp
from lasuite.plugins import kyutai
from livekit import rtc
from livekit.agents import stt

SETTLE_S = 4.0
TIMEOUT_S = 60.0


async def transcribe(engine: kyutai.STT, wav_path: str) -> dict:
    with wave.open(wav_path, "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    pcm += bytes(2 * 2 * rate)  # 2 s of silence
    step = rate // 50  # 20 ms
    words: list[dict] = []
    end_of_speech = 0
    stream = engine.stream()
    for i in range(0, len(pcm) // 2, step):
        chunk = pcm[2 * i : 2 * (i + step)]
        stream.push_frame(
            rtc.AudioFrame(
                data=chunk, sample_rate=rate, num_channels=1, samples_per_channel=len(chunk) // 2
            )
        )
    stream.flush()
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            event = await asyncio.wait_for(stream.__anext__(), timeout=SETTLE_S)
        except (TimeoutError, StopAsyncIteration):
            break
        if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
            alt = event.alternatives[0]
            words.append({"text": alt.text, "start_time": alt.start_time})
        elif event.type == stt.SpeechEventType.END_OF_SPEECH:
            end_of_speech += 1
    await stream.aclose()
    return {
        "text": " ".join(w["text"] for w in words),
        "words": words,
        "end_of_speech": end_of_speech,
    }


async def run(url: str, wav_paths: list[str]) -> list[dict]:
    async with aiohttp.ClientSession() as session:
        engine = kyutai.STT(base_url=url, http_session=session)
        results = [await transcribe(engine, path) for path in wav_paths]
        await engine.aclose()
    return results


def main() -> None:
    url, *wav_paths = sys.argv[1:]
    print(json.dumps(asyncio.run(run(url, wav_paths))))


if __name__ == "__main__":
    main()
