"""The web page in a real browser: Debian's headless Chromium, driven by Selenium.

Chromium's fake microphone plays an eval clip into the page; the words must appear. Typed text
must come back as audio frames scheduled for playback, with words highlighted. Screenshots of
each state go to `build/screenshots/` (the README's come from there).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import websockets

from parley.audio.decode import decode_file
from parley.bench.wer import normalize
from tests.conftest import (
    API_KEY,
    EVAL_DIR,
    ROOT,
    Server,
    packaged_model_dir,
    serving,
)

SHOTS = ROOT / "build" / "screenshots"
CLIP = EVAL_DIR / "pocketsphinx" / "librivox_0930.wav"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian chromium + chromium-driver are installed by scripts/install.sh",
)


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(
        tmp_path_factory.mktemp("web"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "WhisperStreaming"
batch_size = 2
model = "{packaged_model_dir()}"
[modules.tts]
type = "PiperTts"
batch_size = 2
""",
    )


def fake_mic_wav(tmp: Path) -> Path:
    """The clip as 16-bit 48 kHz mono with 3 s of silence after it (Chromium loops the file)."""
    pcm = decode_file(CLIP.read_bytes(), 48_000)
    pcm = np.concatenate([np.zeros(24_000, np.float32), pcm, np.zeros(144_000, np.float32)])
    path = tmp / "mic.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def chromium(*extra: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        "--autoplay-policy=no-user-gesture-required",
        *extra,
    ):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    mic = fake_mic_wav(tmp_path_factory.mktemp("mic"))
    driver = chromium(
        "--use-fake-ui-for-media-stream",  # grants the microphone permission
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={mic}",
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


def wait_for(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def page_state(driver: Any) -> dict[str, Any]:
    return dict(driver.execute_script("return window.parley"))


def open_page(driver: Any, srv: Server, key: str = API_KEY) -> None:
    from selenium.webdriver.common.by import By

    driver.get(srv.http + "/")
    wait_for(lambda: "channels" in driver.find_element(By.ID, "capacity").text, 10, "capacity")
    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)


def test_page_is_served_offline(web_server: Server) -> None:
    import urllib.request

    with urllib.request.urlopen(web_server.http + "/", timeout=5) as r:
        html = r.read().decode()
    assert "<title>Parley</title>" in html and "app.js" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for asset in ("app.js", "msgpack.js", "capture-worklet.js", "style.css"):
        with urllib.request.urlopen(f"{web_server.http}/{asset}", timeout=5) as r:
            assert r.status == 200 and r.read()


def test_microphone_to_live_transcript(web_server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, web_server)
    browser.find_element(By.ID, "mic-start").click()
    reference = normalize("He might even have been made amiable himself")

    def heard_enough() -> bool:
        said = normalize(" ".join(w["text"] for w in page_state(browser)["stt"]["words"]))
        return sum(1 for w in reference if w in said) >= 0.7 * len(reference)

    wait_for(heard_enough, 40, "the clip's words on the page")
    state = page_state(browser)["stt"]
    assert state["ready"] and state["steps"] > 10 and state["framesSent"] > 20
    assert len(state["lastPrs"]) == 3
    times = [w["start_s"] for w in state["words"]]
    assert times == sorted(times)
    items = browser.find_elements(By.CSS_SELECTOR, "#transcript li")
    assert len(items) == len(state["words"]) and " s" in items[0].text
    live = browser.find_element(By.ID, "live").text.lower()
    assert "amiable" in live or "might" in live
    browser.save_screenshot(str(SHOTS / "stt-live.png"))
    browser.find_element(By.ID, "mic-stop").click()
    wait_for(lambda: not page_state(browser)["stt"]["running"], 10, "the microphone to stop")
    assert not page_state(browser)["stt"]["errors"]
    browser.save_screenshot(str(SHOTS / "stt-stopped.png"))


def test_text_to_speech_plays_and_highlights(web_server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, web_server)
    box = browser.find_element(By.ID, "tts-text")
    box.clear()
    text = "The harbor was quiet in the early morning, and a gray cat walked along the wall."
    box.send_keys(text)
    browser.find_element(By.ID, "speak").click()
    wait_for(lambda: page_state(browser)["tts"]["framesReceived"] > 5, 20, "audio frames")
    wait_for(lambda: page_state(browser)["tts"]["highlighted"], 10, "a highlighted word")
    browser.save_screenshot(str(SHOTS / "tts-speaking.png"))
    wait_for(lambda: page_state(browser)["tts"]["done"], 30, "the end of the stream")
    state = page_state(browser)["tts"]
    assert state["framesScheduled"] == state["framesReceived"] > 40  # over 3 s of audio
    assert [w["text"] for w in state["words"]] == text.split()
    assert state["ttfaMs"] is not None and state["ttfaMs"] < 5000
    assert "first audio after" in browser.find_element(By.ID, "ttfa").text
    # Highlighting follows playback: later words light up as time passes.
    wait_for(lambda: max(page_state(browser)["tts"]["highlighted"]) >= 5, 10, "later words")
    voices = [o.text for o in browser.find_elements(By.CSS_SELECTOR, "#voice option")]
    assert voices == ["en_US-joe-medium"]
    assert not state["errors"]


def test_errors_are_shown_in_words(web_server: Server, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    open_page(browser, web_server, key="wrong-key")
    browser.find_element(By.ID, "speak").click()
    message = wait_for(lambda: browser.find_element(By.ID, "tts-error").text, 10, "an error")
    assert "refused this API key" in message
    browser.save_screenshot(str(SHOTS / "error-bad-key.png"))

    async def hold_all_stt_slots() -> list[Any]:
        url = f"ws://127.0.0.1:{web_server.port}/api/asr-streaming"
        return [
            await websockets.connect(url, additional_headers={"kyutai-api-key": API_KEY})
            for _ in range(2)
        ]

    loop = asyncio.new_event_loop()
    holders = loop.run_until_complete(hold_all_stt_slots())
    try:
        open_page(browser, web_server)
        wait_for(lambda: "(full)" in browser.find_element(By.ID, "capacity").text, 10, "full")
        browser.find_element(By.ID, "mic-start").click()
        message = wait_for(lambda: browser.find_element(By.ID, "stt-error").text, 10, "error")
        assert "The server is full" in message
        browser.save_screenshot(str(SHOTS / "error-server-full.png"))
    finally:
        for h in holders:
            loop.run_until_complete(h.close())
        loop.close()


def test_microphone_refused_is_said_in_words(web_server: Server) -> None:
    from selenium.webdriver.common.by import By

    # A browser whose user refuses every permission prompt.
    driver = chromium("--use-fake-device-for-media-stream", "--deny-permission-prompts")
    try:
        open_page(driver, web_server)
        driver.find_element(By.ID, "mic-start").click()
        message = wait_for(lambda: driver.find_element(By.ID, "stt-error").text, 10, "error")
        assert "Microphone permission was refused" in message
        assert not page_state(driver)["stt"]["running"]
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / "error-mic-refused.png"))
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def kyutai_web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Kyutai STT and TTS (tiny random checkpoints written here) behind the same page."""
    from tests.kyutai_checkpoints import (
        tiny_tts_voice_path,
        write_tiny_stt_checkpoint,
        write_tiny_tts_checkpoint,
    )

    stt = write_tiny_stt_checkpoint(tmp_path_factory.mktemp("tiny-stt"))
    tts = write_tiny_tts_checkpoint(tmp_path_factory.mktemp("tiny-tts"))
    yield from serving(
        tmp_path_factory.mktemp("kyutai-web"),
        f"""
authorized_ids = ["{API_KEY}"]
[modules.asr]
type = "KyutaiStt"
batch_size = 1
hf_repo = "{stt}"
[modules.tts]
type = "KyutaiTts"
batch_size = 1
hf_repo = "{tts}"
n_q = 8
voice = "{tiny_tts_voice_path(tts)}"
""",
    )


def test_page_drives_kyutai_modules(kyutai_web_server: Server, browser: Any) -> None:
    """The random models say nothing sensible; the page must still stream to and from them."""
    from selenium.webdriver.common.by import By

    open_page(browser, kyutai_web_server)
    capacity = browser.find_element(By.ID, "capacity").text
    assert "Speech to text: 0 of 1" in capacity and "Text to speech: 0 of 1" in capacity
    browser.find_element(By.ID, "mic-start").click()
    wait_for(lambda: page_state(browser)["stt"]["steps"] > 10, 30, "Step messages")
    browser.find_element(By.ID, "mic-stop").click()
    wait_for(lambda: not page_state(browser)["stt"]["running"], 10, "the microphone to stop")
    assert page_state(browser)["stt"]["ready"] and not page_state(browser)["stt"]["errors"]

    box = browser.find_element(By.ID, "tts-text")
    box.clear()
    box.send_keys("one two three four")
    browser.find_element(By.ID, "speak").click()
    wait_for(lambda: page_state(browser)["tts"]["done"], 60, "the end of the stream")
    state = page_state(browser)["tts"]
    assert state["framesScheduled"] == state["framesReceived"] > 5
    assert [w["text"] for w in state["words"]] == ["one", "two", "three", "four"]
    assert not state["errors"]
    browser.save_screenshot(str(SHOTS / "kyutai-modules.png"))
