"""The tiny Kyutai STT checkpoint runs through moshi's real loader and streaming code."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("moshi")

import sentencepiece  # noqa: E402
from moshi.models import LMGen, LMModel, loaders  # noqa: E402
from moshi.models.compression import MimiModel  # noqa: E402
from moshi.utils.compile import no_compile  # noqa: E402

from tests.kyutai_checkpoints import (  # noqa: E402
    AUDIO_DELAY_SECONDS,
    TEXT_PADDING_ID,
    TINY_CARD,
    TINY_EXTRA_HEADS,
    TINY_EXTRA_HEADS_DIM,
    TINY_MOSHI_DELAYS,
    TINY_MOSHI_DEP_Q,
    TINY_MOSHI_N_Q,
    TINY_N_Q,
    load_tiny_moshi_checkpoint,
    load_tiny_stt_checkpoint,
    recording_margins,
    write_tiny_moshi_checkpoint,
    write_tiny_stt_checkpoint,
)

FRAMES = 20
FRAME_SIZE = 1920
BATCH = 2


@pytest.fixture(autouse=True)
def _fast_cpu() -> Iterator[None]:
    """One thread (2 contended cores are much slower) and no lazy torch.compile."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with no_compile():
            yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_stt_checkpoint(tmp_path_factory.mktemp("tiny-stt"))


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"unexpected Hugging Face Hub call: {args} {kwargs}")

    monkeypatch.setattr(loaders, "hf_hub_download", refuse)


def reset_rows(mimi: Any, lm_gen: Any, slots: list[int]) -> None:
    """moshi's per-row reset: the rows of `slots` start afresh, the others carry on."""
    mask = torch.zeros(BATCH, dtype=torch.bool)
    mask[slots] = True
    mimi.reset_streaming(mask)
    lm_gen.reset_streaming(mask)


@dataclass
class Stt:
    mimi: MimiModel
    lm: LMModel
    lm_gen: LMGen
    tokenizer: sentencepiece.SentencePieceProcessor

    def step(self, pcm: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        codes = self.mimi.encode(pcm)
        assert codes.shape == (pcm.shape[0], TINY_N_Q, 1)
        result = self.lm_gen.step_with_extra_heads(codes)
        assert result is not None  # all delays are 0: never None
        return result

    def reset(self, slots: list[int]) -> None:
        reset_rows(self.mimi, self.lm_gen, slots)

    def set_exec_mask(self, mask: torch.Tensor) -> None:
        self.mimi.set_exec_mask(mask)
        self.lm_gen.set_exec_mask(mask)


def open_stt(directory: Path, batch_size: int = BATCH) -> Stt:
    info = load_tiny_stt_checkpoint(directory)
    mimi = info.get_mimi(device="cpu")
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    lm_gen = LMGen(lm, temp=0, temp_text=0)
    mimi.streaming_forever(batch_size)
    lm_gen.streaming_forever(batch_size)
    return Stt(mimi, lm, lm_gen, info.get_text_tokenizer())


def audio(seed: int, frames: int = FRAMES) -> torch.Tensor:
    """[frames, 1, 1920] of noisy tones, deterministic from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    time = torch.arange(frames * FRAME_SIZE) / 24000
    frequency = 100 + 2000 * torch.rand((), generator=generator)
    signal = 0.3 * torch.sin(2 * torch.pi * frequency * time)
    signal = signal + 0.05 * torch.randn(frames * FRAME_SIZE, generator=generator)
    return signal.view(frames, 1, FRAME_SIZE)


def run(stt: Stt, per_slot: list[torch.Tensor]) -> torch.Tensor:
    """Steps each slot through its own frames; returns text tokens [B, frames]."""
    tokens = []
    batch = len(per_slot)
    for frame in range(per_slot[0].shape[0]):
        pcm = torch.stack([slot[frame] for slot in per_slot])
        out, heads = stt.step(pcm)
        assert out.shape == (batch, 1, 1) and out.dtype == torch.long
        assert len(heads) == TINY_EXTRA_HEADS
        for head in heads:
            assert head.shape == (batch, 1, TINY_EXTRA_HEADS_DIM)
            torch.testing.assert_close(head.sum(-1), torch.ones(batch, 1))
        tokens.append(out[:, 0, 0])
    return torch.stack(tokens, dim=1)


def test_loads_like_a_real_checkpoint(checkpoint: Path) -> None:
    info = load_tiny_stt_checkpoint(checkpoint)
    assert info.model_type == "stt"
    assert info.stt_config == {
        "audio_silence_prefix_seconds": 0.0,
        "audio_delay_seconds": AUDIO_DELAY_SECONDS,
    }
    assert info.lm_gen_config["temp_text"] == 0.0
    mimi = info.get_mimi(device="cpu")
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    tokenizer = info.get_text_tokenizer()

    assert (mimi.sample_rate, mimi.frame_rate, mimi.frame_size) == (24000, 12.5, FRAME_SIZE)
    assert mimi.num_codebooks == lm.n_q == TINY_N_Q
    assert mimi.cardinality == lm.card == TINY_CARD
    assert lm.dep_q == 0 and lm.depformer is None and set(lm.delays) == {0}
    assert len(lm.extra_heads) == TINY_EXTRA_HEADS
    assert lm.dtype == torch.float32
    assert lm.text_card == tokenizer.get_piece_size()
    assert lm.text_padding_token_id == TEXT_PADDING_ID == tokenizer.pad_id()
    assert lm.end_of_text_padding_id == 0 == tokenizer.unk_id()
    assert (tokenizer.bos_id(), tokenizer.eos_id()) == (1, 2)
    pieces = tokenizer.encode("hello meeting", out_type=str)
    assert tokenizer.decode(pieces) == "hello meeting"
    assert int(AUDIO_DELAY_SECONDS * mimi.frame_rate) == 6  # asr_delay_in_tokens


def test_writing_is_deterministic(checkpoint: Path, tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    again = write_tiny_stt_checkpoint(tmp_path / "again")
    other = write_tiny_stt_checkpoint(tmp_path / "other", seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    names = sorted(path.name for path in checkpoint.iterdir())
    assert names == [
        "config.json",
        "mimi.safetensors",
        "mimi_config.json",
        "model.safetensors",
        "tokenizer.model",
    ]
    for name in names:
        assert (checkpoint / name).read_bytes() == (again / name).read_bytes(), name
    for name in ("model.safetensors", "mimi.safetensors"):
        assert (checkpoint / name).read_bytes() != (other / name).read_bytes(), name


def test_greedy_streaming_is_deterministic_and_batch_independent(checkpoint: Path) -> None:
    speech, noise = audio(1), audio(2)

    stt = open_stt(checkpoint)
    first = run(stt, [speech, speech])
    assert first.shape == (BATCH, FRAMES)
    assert torch.equal(first[0], first[1])
    assert ((first >= 0) & (first < stt.lm.text_card)).all()

    second = run(open_stt(checkpoint), [speech, speech])
    assert torch.equal(first, second)

    mixed = run(open_stt(checkpoint), [speech, noise])
    assert torch.equal(mixed[0], first[0])
    # The codes follow the audio, and so do the tokens (the first step only sees the
    # initial tokens, whatever the audio).
    assert mixed[0, 0] == mixed[1, 0]
    assert not torch.equal(mixed[0], mixed[1])


def test_resetting_one_slot_restarts_it_while_the_other_continues(checkpoint: Path) -> None:
    a, b, c = audio(1), audio(2), audio(3)

    reference = open_stt(checkpoint)
    before = run(reference, [a, b])
    undisturbed = run(reference, [a, c])

    stt = open_stt(checkpoint)
    assert torch.equal(run(stt, [a, b]), before)
    stt.reset([0])
    after = run(stt, [a, c])
    assert torch.equal(after[0], before[0])  # slot 0 starts over
    assert torch.equal(after[1], undisturbed[1])  # slot 1 never noticed
    assert not torch.equal(after[0], undisturbed[0])


def test_exec_mask_skips_slots_without_input(checkpoint: Path) -> None:
    a = audio(1)
    stt = open_stt(checkpoint)
    idle = {3, 4, 9, 15}  # steps where slot 1 has no audio
    slot0: list[int] = []
    slot1: list[int] = []
    next_frame = 0
    for step in range(FRAMES):
        active = step not in idle
        mask = torch.tensor([True, active])
        stt.set_exec_mask(mask)
        frame1 = a[next_frame] if active else torch.zeros(1, FRAME_SIZE)
        out, heads = stt.step(torch.stack([a[step], frame1]))
        slot0.append(int(out[0, 0, 0]))
        if active:
            slot1.append(int(out[1, 0, 0]))
            next_frame += 1
        else:
            assert int(out[1, 0, 0]) == stt.lm.ungenerated_token_id == -2
    stt.set_exec_mask(torch.ones(BATCH, dtype=torch.bool))

    # Slot 1 saw the same frames as slot 0, just later: same tokens, as if never paused.
    assert slot1 == slot0[: len(slot1)]
    assert len(slot1) == FRAMES - len(idle)


def test_greedy_decisions_are_far_from_ties(checkpoint: Path) -> None:
    """The exact comparisons above hold on any CPU only if no code or token of their streams
    is within float noise of flipping (see `recording_margins`)."""
    with recording_margins() as margins:
        stt = open_stt(checkpoint)
        run(stt, [audio(1), audio(2)])  # every stream the tests above compare, fresh ...
        run(stt, [audio(1), audio(3)])  # ... or continued
    margins.assert_wide()
    assert margins.codes == 2 * 2 * FRAMES * TINY_N_Q and margins.tokens == 2 * 2 * FRAMES


def test_tokens_survive_what_another_cpu_does_to_the_floats(checkpoint: Path) -> None:
    """Simulated: the same streams alone in a batch of 1, among others in a batch of 3, and on
    2 threads (their floats move by ~1e-6 in each) give the same tokens."""
    a, b, c = audio(1), audio(2), audio(3)
    reference = run(open_stt(checkpoint), [a, b])
    assert torch.equal(run(open_stt(checkpoint, batch_size=1), [a])[0], reference[0])
    assert torch.equal(run(open_stt(checkpoint, batch_size=3), [c, b, a])[[2, 1]], reference)
    torch.set_num_threads(2)  # the autouse fixture restores it
    assert torch.equal(run(open_stt(checkpoint), [a, b]), reference)


# --- Full-duplex Moshi (speech-to-speech) -----------------------------------------------

MOSHI_FRAMES = 12
CHECKPOINT_FILES = [
    "config.json",
    "mimi.safetensors",
    "mimi_config.json",
    "model.safetensors",
    "tokenizer.model",
]


@pytest.fixture(scope="module")
def moshi_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_moshi_checkpoint(tmp_path_factory.mktemp("tiny-moshi"))


@dataclass
class Moshi:
    mimi: MimiModel
    lm: LMModel
    lm_gen: LMGen
    tokenizer: sentencepiece.SentencePieceProcessor
    exec_mask: torch.Tensor

    def step(self, pcm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One 80 ms frame in, (tokens [B, 1 + dep_q, 1], pcm [B, 1, 1920]) or None out."""
        codes = self.mimi.encode(pcm)
        assert codes.shape == (pcm.shape[0], TINY_MOSHI_N_Q - TINY_MOSHI_DEP_Q, 1)
        out = self.lm_gen.step(codes)
        if out is None:
            return None
        assert out.shape == (pcm.shape[0], 1 + TINY_MOSHI_DEP_Q, 1) and out.dtype == torch.long
        # Rows without output (-2: masked, or just (re)started with support_out_of_sync) must
        # not reach Mimi's embedding (IndexError) nor advance their decoder state.
        valid = self.exec_mask & (out[:, 1:] >= 0).all(dim=1)[:, 0]
        self.mimi.set_exec_mask(valid)
        pcm_out = self.mimi.decode(out[:, 1:].clamp(min=0))
        self.mimi.set_exec_mask(self.exec_mask)
        assert pcm_out.shape == pcm.shape and pcm_out.dtype == torch.float32
        return out, pcm_out

    def reset(self, slots: list[int]) -> None:
        reset_rows(self.mimi, self.lm_gen, slots)

    def set_exec_mask(self, mask: torch.Tensor) -> None:
        self.exec_mask = mask
        self.mimi.set_exec_mask(mask)
        self.lm_gen.set_exec_mask(mask)


def open_moshi(
    directory: Path, *, sampled: bool = False, out_of_sync: bool = True, batch_size: int = BATCH
) -> Moshi:
    info = load_tiny_moshi_checkpoint(directory)
    mimi = info.get_mimi(device="cpu")
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    # moshi/server.py: LMGen(lm, cfg_coef=1.0, condition_tensors={}, **info.lm_gen_config);
    # lm_gen_config is {} for Moshi, so LMGen's defaults (temp 0.8, temp_text 0.7,
    # top_k 250, top_k_text 25) apply.
    temps = {} if sampled else {"temp": 0.0, "temp_text": 0.0}
    lm_gen = LMGen(lm, support_out_of_sync=out_of_sync, **temps, **info.lm_gen_config)
    mimi.streaming_forever(batch_size)
    lm_gen.streaming_forever(batch_size)
    ones = torch.ones(batch_size, dtype=torch.bool)
    return Moshi(mimi, lm, lm_gen, info.get_text_tokenizer(), ones)


def chat(moshi: Moshi, per_slot: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Steps each slot through its frames; tokens [B, 1 + dep_q, frames], pcm [B, frames*1920].

    Steps that return None (or -2 rows) give -2 tokens and zero pcm.
    """
    tokens, pcm = [], []
    batch = len(per_slot)
    for frame in range(per_slot[0].shape[0]):
        result = moshi.step(torch.stack([slot[frame] for slot in per_slot]))
        if result is None:
            out = torch.full((batch, 1 + TINY_MOSHI_DEP_Q, 1), -2, dtype=torch.long)
            pcm_out = torch.zeros(batch, 1, FRAME_SIZE)
        else:
            out, pcm_out = result
            pcm_out = torch.where((out[:, 1:] >= 0).all(1, keepdim=True), pcm_out, 0.0)
        tokens.append(out)
        pcm.append(pcm_out[:, 0])
    return torch.cat(tokens, dim=2), torch.cat(pcm, dim=1)


def server_text(tokenizer: sentencepiece.SentencePieceProcessor, token: int) -> str | None:
    """moshi/server.py's decode_and_send: the 0x02 text message payload, or None."""
    if token in (0, 3):
        return None
    return tokenizer.id_to_piece(token).replace("▁", " ")


def test_moshi_loads_like_a_real_checkpoint(moshi_checkpoint: Path) -> None:
    info = load_tiny_moshi_checkpoint(moshi_checkpoint)
    assert info.model_type == "moshi"
    assert info.stt_config == {} and info.lm_gen_config == {}
    mimi = info.get_mimi(device="cpu")
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    tokenizer = info.get_text_tokenizer()
    assert (lm.n_q, lm.dep_q, lm.num_codebooks) == (TINY_MOSHI_N_Q, TINY_MOSHI_DEP_Q, 9)
    assert lm.delays == TINY_MOSHI_DELAYS and lm.depformer is not None
    assert len(lm.extra_heads) == 0
    assert mimi.num_codebooks == TINY_MOSHI_DEP_Q == TINY_MOSHI_N_Q - TINY_MOSHI_DEP_Q
    assert mimi.cardinality == lm.card == TINY_CARD
    assert lm.text_card == tokenizer.get_piece_size()
    assert LMGen(lm).max_delay == 1
    assert sorted(path.name for path in moshi_checkpoint.iterdir()) == CHECKPOINT_FILES


def test_moshi_writing_is_deterministic(moshi_checkpoint: Path, tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    again = write_tiny_moshi_checkpoint(tmp_path / "again")
    assert torch.equal(state, torch.random.get_rng_state())
    for name in CHECKPOINT_FILES:
        assert (moshi_checkpoint / name).read_bytes() == (again / name).read_bytes(), name


def test_moshi_chat_loop_like_the_server(moshi_checkpoint: Path) -> None:
    """server.py's recv_loop/decode_and_send, sampled, batch 2, default LMGen."""
    speech, noise = audio(1, MOSHI_FRAMES), audio(2, MOSHI_FRAMES)
    runs = []
    for _ in range(2):
        torch.manual_seed(1234)
        moshi = open_moshi(moshi_checkpoint, sampled=True, out_of_sync=False)
        mimi, lm_gen = moshi.mimi, moshi.lm_gen
        skip_frames, nones, texts, tokens, pcm = 1, 0, [], [], []
        for frame in range(MOSHI_FRAMES):
            codes = mimi.encode(torch.stack([speech[frame], noise[frame]]))
            assert codes.shape == (BATCH, TINY_MOSHI_N_Q - TINY_MOSHI_DEP_Q, 1)
            if skip_frames:  # the first frame is "in the past": re-pad the encoder
                mimi.reset_streaming()
                skip_frames -= 1
            for c in range(codes.shape[-1]):
                out = lm_gen.step(codes[:, :, c : c + 1])
                if out is None:
                    assert frame < lm_gen.max_delay
                    nones += 1
                    continue
                assert out.shape == (BATCH, 1 + TINY_MOSHI_DEP_Q, 1)
                assert (out >= 0).all()
                assert (out[:, 0] < moshi.lm.text_card).all() and (out[:, 1:] < TINY_CARD).all()
                pcm_out = mimi.decode(out[:, 1:])
                assert pcm_out.shape == (BATCH, 1, FRAME_SIZE)
                assert pcm_out.dtype == torch.float32 and pcm_out.abs().sum() > 0
                texts.append(server_text(moshi.tokenizer, int(out[0, 0, 0])))
                tokens.append(out)
                pcm.append(pcm_out)
        assert nones == lm_gen.max_delay == 1
        assert len(tokens) == MOSHI_FRAMES - 1
        runs.append((torch.cat(tokens, 2), torch.cat(pcm, 2), texts))
    # Same seed, same everything.
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])
    assert runs[0][2] == runs[1][2]
    assert any(text is not None for text in runs[0][2])


def test_moshi_mimi_encode_and_decode_share_one_streaming_instance(
    moshi_checkpoint: Path,
) -> None:
    """server.py uses one Mimi for both: the encoder and decoder states are separate."""
    a, b = audio(1, MOSHI_FRAMES), audio(2, MOSHI_FRAMES)
    shared = open_moshi(moshi_checkpoint)
    info = load_tiny_moshi_checkpoint(moshi_checkpoint)
    encoder, decoder = info.get_mimi(device="cpu"), info.get_mimi(device="cpu")
    encoder.streaming_forever(BATCH)
    decoder.streaming_forever(BATCH)
    for frame in range(MOSHI_FRAMES):
        pcm = torch.stack([a[frame], b[frame]])
        codes = shared.mimi.encode(pcm)
        assert torch.equal(codes, encoder.encode(pcm))
        fake = (codes + frame) % TINY_CARD
        torch.testing.assert_close(shared.mimi.decode(fake), decoder.decode(fake))


def test_moshi_resetting_one_slot_restarts_it_while_the_other_continues(
    moshi_checkpoint: Path,
) -> None:
    a, b, c = audio(1, MOSHI_FRAMES), audio(2, MOSHI_FRAMES), audio(3, MOSHI_FRAMES)
    reference = open_moshi(moshi_checkpoint)
    before = chat(reference, [a, b])
    undisturbed = chat(reference, [a, c])
    # support_out_of_sync: never None; rows still in their first max_delay steps give -2.
    assert (before[0][:, :, 0] == -2).all() and (before[0][:, :, 1:] >= 0).all()
    assert not torch.equal(before[0][0], before[0][1])  # the output follows the audio

    moshi = open_moshi(moshi_checkpoint)
    first = chat(moshi, [a, b])
    assert torch.equal(first[0], before[0]) and torch.equal(first[1], before[1])
    moshi.reset([0])
    after = chat(moshi, [a, c])
    assert torch.equal(after[0][0], before[0][0])  # slot 0 starts over: tokens...
    torch.testing.assert_close(after[1][0], before[1][0])  # ... and its voice
    assert torch.equal(after[0][1], undisturbed[0][1])  # slot 1 never noticed
    torch.testing.assert_close(after[1][1], undisturbed[1][1])
    assert not torch.equal(after[0][0], undisturbed[0][0])


def test_moshi_per_slot_reset_without_out_of_sync_drops_a_frame_for_everyone(
    moshi_checkpoint: Path,
) -> None:
    """LMGen's shared offset_cpu goes back to 0 on any reset: the next step returns None."""
    a, b = audio(1, 4), audio(2, 4)
    moshi = open_moshi(moshi_checkpoint, out_of_sync=False)
    assert moshi.step(torch.stack([a[0], b[0]])) is None
    assert moshi.step(torch.stack([a[1], b[1]])) is not None
    moshi.reset([0])
    assert moshi.step(torch.stack([a[2], b[2]])) is None  # slot 1's frame is lost too
    assert moshi.step(torch.stack([a[3], b[3]])) is not None


def test_moshi_exec_mask_skips_slots_without_input(moshi_checkpoint: Path) -> None:
    a = audio(1, MOSHI_FRAMES)
    moshi = open_moshi(moshi_checkpoint)
    idle = {3, 4, 8}  # steps where slot 1 has no audio
    slot0_tokens, slot1_tokens, slot0_pcm, slot1_pcm = [], [], [], []
    next_frame = 0
    for step in range(MOSHI_FRAMES):
        active = step not in idle
        moshi.set_exec_mask(torch.tensor([True, active]))
        frame1 = a[next_frame] if active else torch.zeros(1, FRAME_SIZE)
        result = moshi.step(torch.stack([a[step], frame1]))
        assert result is not None
        out, pcm_out = result
        slot0_tokens.append(out[0])
        slot0_pcm.append(pcm_out[0])
        if active:
            slot1_tokens.append(out[1])
            slot1_pcm.append(pcm_out[1])
            next_frame += 1
        else:
            assert (out[1] == moshi.lm.ungenerated_token_id).all()
    moshi.set_exec_mask(torch.ones(BATCH, dtype=torch.bool))

    # Slot 1 saw the same frames as slot 0, just later: same tokens and voice.
    count = len(slot1_tokens)
    assert count == MOSHI_FRAMES - len(idle)
    assert torch.equal(torch.stack(slot1_tokens), torch.stack(slot0_tokens[:count]))
    torch.testing.assert_close(torch.stack(slot1_pcm[1:]), torch.stack(slot0_pcm[1:count]))


def test_moshi_greedy_decisions_are_far_from_ties(moshi_checkpoint: Path) -> None:
    """As for the STT model: the streams of the exact comparisons above, far from any tie."""
    a, b, c = audio(1, MOSHI_FRAMES), audio(2, MOSHI_FRAMES), audio(3, MOSHI_FRAMES)
    with recording_margins() as margins:
        moshi = open_moshi(moshi_checkpoint)
        chat(moshi, [a, b])
        chat(moshi, [a, c])
    margins.assert_wide()
    assert margins.codes and margins.tokens


def test_moshi_tokens_survive_what_another_cpu_does_to_the_floats(moshi_checkpoint: Path) -> None:
    """As for the STT model: alone, among others and on 2 threads, the same tokens and voice."""
    a, b, c = audio(1, MOSHI_FRAMES), audio(2, MOSHI_FRAMES), audio(3, MOSHI_FRAMES)
    tokens, pcm = chat(open_moshi(moshi_checkpoint), [a, b])
    alone = chat(open_moshi(moshi_checkpoint, batch_size=1), [a])
    assert torch.equal(alone[0][0], tokens[0])
    torch.testing.assert_close(alone[1][0], pcm[0])
    among = chat(open_moshi(moshi_checkpoint, batch_size=3), [c, b, a])
    assert torch.equal(among[0][[2, 1]], tokens)
    torch.testing.assert_close(among[1][[2, 1]], pcm)
    torch.set_num_threads(2)
    threads = chat(open_moshi(moshi_checkpoint), [a, b])
    assert torch.equal(threads[0], tokens)
    torch.testing.assert_close(threads[1], pcm)
