"""The tiny Kyutai TTS checkpoint runs through moshi's real TTSModel, LMGen and Mimi."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("moshi")

from moshi.models import LMGen  # noqa: E402
from moshi.models.tts import Entry, TTSModel  # noqa: E402
from moshi.utils.compile import no_compile  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from parley.backends.kyutai.tts import ready_to_step  # noqa: E402
from tests.kyutai_checkpoints import (  # noqa: E402
    TINY_N_Q,
    TINY_TTS_SPEAKER_DIM,
    TINY_TTS_VOICE_FRAMES,
    TTS_SECOND_STREAM_AHEAD,
    TTS_VOICE_NAME,
    load_tiny_tts_checkpoint,
    tiny_tts_voice_path,
    write_tiny_tts_checkpoint,
)

FRAME_SIZE = 1920
TEXTS = ["hello world", "the quick brown fox jumps"]


@pytest.fixture(autouse=True)
def _cpu_settings() -> Iterator[None]:
    os.environ.setdefault("NO_TORCH_COMPILE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with no_compile():
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_tts_checkpoint(tmp_path_factory.mktemp("tts"))


def _tts(directory: Path) -> TTSModel:
    info = load_tiny_tts_checkpoint(directory)
    assert info.model_type == "tts"
    return TTSModel.from_checkpoint_info(
        info, n_q=TINY_N_Q, temp=0.6, cfg_coef=2.0, device="cpu", dtype=torch.float32
    )


def test_checkpoint_structure(checkpoint: Path) -> None:
    info = load_tiny_tts_checkpoint(checkpoint)
    assert info.tts_config == {"audio_delay": 1.28, "second_stream_ahead": TTS_SECOND_STREAM_AHEAD}
    tts = _tts(checkpoint)
    assert tts.multi_speaker and not tts.multistream
    assert tts.valid_cfg_conditionings == {1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0}
    assert tts.delay_steps == 16
    assert tts.lm.dep_q == tts.lm.n_q == TINY_N_Q
    assert tts.mimi.sample_rate == 24000 and tts.mimi.frame_size == FRAME_SIZE
    assert set(tts.lm.condition_provider.conditioners) == {"speaker_wavs", "cfg", "control"}
    voice = tiny_tts_voice_path(checkpoint)
    assert tts.get_voice_path(str(checkpoint / TTS_VOICE_NAME)) == voice
    emb = load_file(str(voice))["speaker_wavs"]
    assert emb.shape == (1, TINY_TTS_SPEAKER_DIM, TINY_TTS_VOICE_FRAMES)
    with pytest.raises(ValueError):
        TTSModel.from_checkpoint_info(info, device="cpu", dtype=torch.float32)  # n_q=32


def test_generate_non_streaming(checkpoint: Path) -> None:
    torch.manual_seed(0)
    tts = _tts(checkpoint)
    cfg = tts.cfg_coef
    tts.cfg_coef = 1.0  # CFG-distilled: the coefficient is a condition, not batch doubling.
    attributes = tts.make_condition_attributes([tiny_tts_voice_path(checkpoint)], cfg_coef=cfg)
    entries = [tts.prepare_script([text], padding_between=1) for text in TEXTS]
    result = tts.generate(entries, [attributes, attributes])
    assert all(step is not None for step in result.end_steps)
    assert [[w for w, _ in t] for t in result.all_transcripts] == [t.split() for t in TEXTS]
    frames = result.frames[tts.delay_steps :]
    with tts.mimi.streaming(len(TEXTS)), torch.no_grad():
        pcm = tts.mimi.decode(frames[-1][:, 1:])
    assert pcm.shape == (len(TEXTS), 1, FRAME_SIZE) and pcm.dtype == torch.float32


@torch.no_grad()
def test_streaming_word_by_word(checkpoint: Path) -> None:
    """moshi-server's TTSService loop: one word pushed per slot per step, exec masks."""
    torch.manual_seed(0)
    tts = _tts(checkpoint)
    lm, mimi, machine = tts.lm, tts.mimi, tts.machine
    cfg, tts.cfg_coef = tts.cfg_coef, 1.0
    batch = len(TEXTS)
    attributes = tts.make_condition_attributes([tiny_tts_voice_path(checkpoint)], cfg_coef=cfg)
    condition_tensors = lm.condition_provider.prepare_and_provide([attributes] * batch)

    states = [machine.new_state([]) for _ in range(batch)]
    offsets = [0] * batch
    actives = [False] * batch
    consumed: list[list[int]] = [[] for _ in range(batch)]

    def on_text_hook(text_tokens: torch.Tensor) -> None:
        out = []
        for b, token in enumerate(text_tokens.tolist()):
            if not actives[b]:
                out.append(token)
                continue
            out_token, new_word = machine.process(offsets[b], states[b], token)
            if new_word:
                consumed[b].append(offsets[b])
            out.append(out_token)
        text_tokens[:] = torch.tensor(out, dtype=torch.long)

    def on_audio_hook(audio_tokens: torch.Tensor) -> None:
        delays = lm_gen.delays_cuda[1 : 1 + lm.dep_q]
        row_offsets = lm_gen._streaming_state.offsets
        mask = row_offsets[:, None] < delays + tts.delay_steps
        audio_tokens.masked_fill_(mask, machine.token_ids.zero)

    lm_gen = LMGen(
        lm,
        temp=tts.temp,
        temp_text=tts.temp,
        cfg_coef=1.0,
        condition_tensors=condition_tensors,
        on_text_hook=on_text_hook,
        on_audio_hook=on_audio_hook,
        support_out_of_sync=True,
    )
    lm_gen.streaming_forever(batch)
    mimi.streaming_forever(batch)
    input_tokens = torch.full((batch, lm.n_q - lm.dep_q, 1), machine.token_ids.zero)
    assert input_tokens.shape == (batch, 0, 1)

    pending = [text.split() for text in TEXTS]
    complete = [False] * batch
    first_word = [True] * batch
    done_at: list[int | None] = [None] * batch
    pcm_frames: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    missing_steps = [0] * batch
    for _ in range(400):
        for b in range(batch):  # the client sends one word per step, then "done"
            if pending[b]:
                word = pending[b].pop(0)
                tokens = tts.tokenizer.encode(word)
                if first_word[b]:
                    tokens.insert(0, machine.token_ids.main)
                    first_word[b] = False
                padding = max(0, 1 + len(tokens) - 1)
                states[b].entries.append(Entry(tokens, word, padding=padding))
            elif not complete[b]:
                complete[b] = True
        for b in range(batch):
            active = done_at[b] is None and ready_to_step(
                states[b], complete[b], machine.second_stream_ahead
            )
            if not active and done_at[b] is None:
                missing_steps[b] += 1  # MISSING_WORDS: waiting for text
            actives[b] = active
        if not any(actives):
            if all(d is not None for d in done_at):
                break
            continue
        mimi_actives = [
            actives[b] and offsets[b] - lm_gen.max_delay >= tts.delay_steps for b in range(batch)
        ]
        lm_gen.set_exec_mask(torch.tensor(actives))
        mimi.set_exec_mask(torch.tensor(mimi_actives))
        frame = lm_gen.step(input_tokens)
        assert frame is not None and frame.shape == (batch, 1 + lm.dep_q, 1)
        pcm = mimi.decode(frame[:, 1:].clamp(min=0))
        assert pcm.shape == (batch, 1, FRAME_SIZE) and pcm.dtype == torch.float32
        for b in range(batch):
            if mimi_actives[b]:
                assert (frame[b, 1:] >= 0).all()
                pcm_frames[b].append(pcm[b, 0].clone())
            if actives[b]:
                offsets[b] += 1
                end = states[b].end_step
                if complete[b] and end is not None:
                    real_end = end + tts.delay_steps + tts.final_padding + lm_gen.max_delay
                    if offsets[b] >= real_end:
                        done_at[b] = offsets[b]  # IS_EOS
    assert all(d is not None for d in done_at), "end of stream not reached"
    for b, text in enumerate(TEXTS):
        state = states[b]
        words = text.split()
        assert not state.entries and state.end_step is not None
        assert [w for w, _ in state.transcript] == words
        starts = [step for _, step in state.transcript]
        assert starts == consumed[b] == state.consumption_times
        assert starts == sorted(starts) and starts[0] >= machine.initial_padding
        assert state.end_step > starts[-1]
        assert missing_steps[b] > 0  # words trickled in: the slot had to wait at the start
        # Audio: one 1920-sample frame per step from delay_steps + max_delay to EOS.
        expected = done_at[b] - tts.delay_steps - lm_gen.max_delay
        assert len(pcm_frames[b]) == expected
        audio = torch.cat(pcm_frames[b])
        assert audio.numel() == expected * FRAME_SIZE and torch.isfinite(audio).all()
    assert len(pcm_frames[0]) != len(pcm_frames[1]) or TEXTS[0] == TEXTS[1]
