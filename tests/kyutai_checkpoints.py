"""Tiny, randomly initialised Kyutai streaming STT and Moshi checkpoints for offline tests.

`write_tiny_stt_checkpoint(directory)` writes a directory laid out like the Hugging Face
repository ``kyutai/stt-1b-en_fr`` (``config.json``, the LM weights, the Mimi weights, a
sentencepiece text tokenizer) plus ``mimi_config.json`` describing a tiny Mimi, so that the
real ``moshi`` code paths (loader, Mimi streaming encoder, ``LMGen``) run on CPU in well
under a second per checkpoint. Weights are random; the transcripts are meaningless, but every
shape, special id and streaming behaviour is the one of a real checkpoint. No network access
is needed or attempted.

Tests compare greedy runs exactly across batch compositions (a slot alone vs beside others,
reset vs fresh), which on another CPU, thread count or batch shape compute with float sums
that differ by ~1e-6. So the Mimi is built with wide-margin codes (`_structure_mimi`) and
the tests check, with `recording_margins`, that none of their codes or greedy tokens is
anywhere near a tie: then the same codes and tokens come out everywhere.

Facts for a backend author (checked against moshi 0.2.13)
---------------------------------------------------------

Loading, without touching the Hub: pass *every* file as a local ``Path`` (``hf_get`` returns
a ``Path`` argument unchanged; a ``str`` without ``hf://`` is also treated as local when
``hf_repo`` is not consulted)::

    info = loaders.CheckpointInfo.from_hf_repo(
        "kyutai/stt-1b-en_fr", config_path=d / "config.json",
        moshi_weights=d / "model.safetensors", mimi_weights=d / "mimi.safetensors",
        tokenizer=d / "tokenizer.model", mimi_config_path=d / "mimi_config.json")
    mimi = info.get_mimi(device="cpu")      # num_codebooks = max(dep_q, n_q - dep_q) = n_q
    lm = info.get_moshi(device="cpu", dtype=torch.float32)
    tokenizer = info.get_text_tokenizer()   # sentencepiece.SentencePieceProcessor
    info.model_type == "stt"; info.stt_config == {"audio_delay_seconds": ...,
                                                   "audio_silence_prefix_seconds": ...}

``config_path`` is always read locally (``Path(config_path).read_text()``). Leaving any of
the other four arguments at ``None`` makes the loader call ``hf_hub_download`` for the file
named in ``config.json`` (``moshi_name``, ``mimi_name``, ``tokenizer_name``,
``mimi_config_name``). Real repositories ship no ``mimi_config.json`` (moshi then uses its
built-in full-size Mimi config); the tiny checkpoint needs it, so always pass it here.

The STT model is an ``LMModel`` with ``dep_q == 0`` (no depformer, no generated audio) that
reads ``n_q`` Mimi codebooks (32 for the real models, ``TINY_N_Q`` here) and all delays 0.

Streaming, one 80 ms frame (1920 samples at 24 kHz, ``mimi.frame_size``) per step::

    lm_gen = LMGen(lm, temp=0, temp_text=0)   # greedy; real configs: lm_gen_config temps 0
    mimi.streaming_forever(batch_size); lm_gen.streaming_forever(batch_size)
    codes = mimi.encode(pcm)                  # pcm float32 [B, 1, 1920] -> long [B, n_q, 1]
    out = lm_gen.step(codes)                  # long [B, 1, 1] (dep_q + 1 = 1 text stream)
    out, heads = lm_gen.step_with_extra_heads(codes)
    #   heads: list of extra_heads_num_heads tensors, float [B, 1, extra_heads_dim],
    #   already softmax-ed over the last axis.

``mimi.encode`` in streaming mode requires a positive multiple of 1920 samples; several
frames at once give ``[B, n_q, T]`` codes, but ``lm_gen.step`` takes exactly one step
(``[B, K, 1]``, ``K >= n_q``; extra codebooks are ignored). With all delays 0, ``step`` never
returns ``None``: the text token for step ``t`` comes back from the call of step ``t``.
``out[b, 0, 0]`` is the text token id: ``3`` (``existing_text_padding_id``, "PAD") and ``0``
("EPAD", ``existing_text_end_padding_id``, the padding step right before a word) are not
text; any other id is a sentencepiece piece (``tokenizer.id_to_piece(i)``, "▁" = space).
Kyutai's own scripts skip ``token in (0, 3)`` and print the rest.

First frame: at offset 0 ``LMGen`` feeds the *initial* tokens (``card`` for audio,
``text_card`` for text) instead of the codes, so the audio of the first frame after a
(re)start is not seen by the model. ``moshi.run_inference`` therefore steps the first frame
twice; the other way is to start with ``audio_silence_prefix_seconds`` (or at least one
frame) of silence.

Delay: words are emitted ``audio_delay_seconds`` after they are spoken (0.5 s for
stt-1b-en_fr, 2.5 s for stt-2.6b-en; 0.5 s in the tiny checkpoint). In frames, as Kyutai's
Rust example computes it: ``asr_delay_in_tokens = int(audio_delay_seconds * 12.5)`` (6 for the
1b, 31 for the 2.6b). The delay lives in the training data, not in ``lm.delays`` (all zeros),
so ``LMGen`` does not compensate for it: a word spoken from frame ``n`` on comes out from
about step ``n + asr_delay_in_tokens`` on, and its start time is about ``(step -
asr_delay_in_tokens) / 12.5 - audio_silence_prefix_seconds`` seconds into the real audio.
To flush the last words after the input ends, keep stepping silence for at least
``audio_delay_seconds`` (``moshi.run_inference`` pads ``audio_delay_seconds + 1.0`` s of zeros
at the end and ``audio_silence_prefix_seconds`` of zeros at the start: 0.0 s for the 1b,
1.0 s for the 2.6b).

CPU notes: moshi wraps rope/gating/etc. in a lazy ``torch.compile`` (first step takes
seconds and needs a C compiler); set ``NO_TORCH_COMPILE=1`` before importing moshi or run
inside ``moshi.utils.compile.no_compile()``. On a loaded 2-core box ``torch.set_num_threads(1)``
is ~10x faster than 2 threads for these tiny tensors.

Per-slot reset (new stream in batch slot ``b`` while others continue)::

    mask = torch.zeros(B, dtype=torch.bool); mask[b] = True
    mimi.reset_streaming(mask); lm_gen.reset_streaming(mask)

This zeroes the conv/KV-cache/offset state of the selected rows only and re-enables them in
the exec mask (``State.reset`` sets ``exec_mask[b] = True``). Caveat: ``LMGen``'s shared
``offset_cpu`` counter is reset to 0 for the whole batch; with all delays 0 (STT) it is only
used to return ``None`` while ``offset_cpu <= max_delay == 0``, i.e. never, so it is harmless.
Fresh slot + same audio = same tokens as the first time (checked in the tests).

Slots without input this step: ``mimi.set_exec_mask(m); lm_gen.set_exec_mask(m)`` with
``m`` a bool ``[B]`` tensor (True = really run). Rows with False still need *some* input of
the right shape (zeros), their state is left untouched, and ``lm_gen.step`` returns
``-2`` (``lm.ungenerated_token_id``) for them (their extra heads are computed on dummy
input: ignore them). The mask stays in force until changed; set it back to all True (or
reset the row) afterwards.

End of turn: the 1b model has ``extra_heads_num_heads = 4``, ``extra_heads_dim = 6``
(reportedly the heads are missing from the config/weights of the published PyTorch repo and
present in ``kyutai/stt-1b-en_fr-candle``; ``lm_kwargs_overrides`` of ``get_moshi`` can add
the two keys). Without heads, ``step_with_extra_heads`` returns an empty list. Kyutai's
examples use ``heads[2][b, 0, 0]`` (probability of class 0 of head 2) as the "speaker is
done" probability and threshold it at 0.5. The tiny checkpoint has the same 4 x 6 heads
(random, so the values are meaningless).

Tokenizer: sentencepiece with ``unk=0, bos=1, eos=2, pad=3`` like Kyutai's, so id 0 doubles as
EPAD and id 3 as PAD; ``text_card`` = vocabulary size and the text embedding has
``text_card + 1`` rows (the last one is the initial token).

Full-duplex Moshi (``write_tiny_moshi_checkpoint``, ``load_tiny_moshi_checkpoint``)
----------------------------------------------------------------------------------

Same files and loader call, ``model_type == "moshi"``, ``stt_config == {}``,
``lm_gen_config == {}``. (A repository without ``config.json`` makes the loader fall back to
moshi's built-in 7B ``_lm_kwargs``, ``model_type "moshi"``.) The ``LMModel`` has a depformer:
``n_q`` audio codebooks = ``dep_q`` generated for Moshi's voice + ``n_q - dep_q`` read from
the user (7B: 16 = 8 + 8, delays ``[0, 0, 1 x 7, 0, 1 x 7]``; tiny: 8 = 4 + 4,
``TINY_MOSHI_DELAYS``), so ``LMGen.max_delay == 1``. ``get_mimi`` keeps
``max(dep_q, n_q - dep_q)`` codebooks (8; tiny 4). Per 80 ms frame::

    codes = mimi.encode(pcm)        # float32 [B, 1, 1920] -> long [B, n_q - dep_q, 1]
    out = lm_gen.step(codes)        # None, or long [B, 1 + dep_q, 1]
    text = out[:, 0, 0]             # skip 0 (EPAD) and 3 (PAD)
    pcm_out = mimi.decode(out[:, 1:])   # float32 [B, 1, 1920], Moshi's voice

``step`` returns ``None`` for the first ``max_delay`` (1) calls after the streaming start or
after *any* ``reset_streaming`` (see below); afterwards every call returns one frame: text and
codebook 0 sampled at the previous step, the delayed codebooks at this one. moshi/server.py
builds ``LMGen(lm, cfg_coef=1.0, condition_tensors={}, **lm_gen_config)``, i.e. the LMGen
defaults ``temp=0.8, temp_text=0.7, top_k=250, top_k_text=25``. Sampling draws from the
global torch RNG for the whole batch, so sampled output is reproducible only for the same
seed *and* the same batch history; the reset/mask tests below are greedy (temps 0).

moshi/server.py (batch 1, one connection at a time behind an ``asyncio.Lock``; warm-up: 4
frames of zeros) on ``GET /api/chat`` websocket: ``mimi.reset_streaming()``,
``lm_gen.reset_streaming()``, sends the handshake ``b"\x00"`` (nothing else). Binary
messages in: kind ``0x01`` + Ogg/Opus bytes (``sphn.OpusStreamReader(24000)``), PCM buffered
into 1920-sample frames; other kinds are logged and ignored. For each frame: ``mimi.encode``;
on the very first frame of a connection it then calls ``mimi.reset_streaming()`` (the first
frame is "in the past"; its codes still go to ``lm_gen.step`` but at offset 0 LMGen feeds
the initial tokens anyway); ``for c in range(codes.shape[-1]): out = lm_gen.step(codes[:, :,
c:c+1])``, skip ``None``, else ``decode_and_send``: ``mimi.decode(out[:, 1:])`` with the
*same* Mimi instance (encoder and decoder keep separate streaming states; checked equal to
two instances), ``sphn.OpusStreamWriter(24000).append_pcm(pcm[0, 0])`` and, if any bytes,
sends ``b"\x01" + opus``; then, if ``out[0, 0, 0] not in (0, 3)``, sends ``b"\x02" +
tokenizer.id_to_piece(tok).replace("▁", " ").encode()`` (one piece per message, leading
space marks a new word).

Batched slots: ``reset_streaming(mask)`` resets the selected rows (Mimi encoder + decoder,
LM KV caches, LMGen token cache/offsets) but also sets LMGen's batch-wide ``offset_cpu`` to
0, so with the default LMGen the next ``step`` returns ``None`` for *all* rows: the other
slots lose one frame. Use ``LMGen(..., support_out_of_sync=True)``: ``step`` never returns
``None``; rows within their first ``max_delay`` steps and rows masked out by
``set_exec_mask`` get ``-2`` (``ungenerated_token_id``) in all ``1 + dep_q`` entries. Then a
reset slot restarts exactly like a fresh one while the others continue undisturbed (same
codes and tokens; the floats of a row may move by ~1e-6 with the batch), and a masked slot
resumes as if paused (tests). ``-2`` codes make ``mimi.decode`` raise
``IndexError``: clamp them to 0 and wrap the decode in ``mimi.set_exec_mask(valid_rows)``
(then restore the input mask), since Mimi's one exec mask gates encoder and decoder alike;
otherwise a row's decoder state advances on dummy codes. The depformer opens a fresh
streaming context inside every step (``set_streaming_detached``), so it has no state across
steps and needs nothing on reset or masking; masked rows are computed but not written back.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import moshi.models.lm
import sentencepiece
import torch
from moshi.models import loaders
from moshi.models.compression import MimiModel
from moshi.quantization.core_vq import EuclideanCodebook
from moshi.utils.compile import no_compile
from safetensors.torch import save_file

TINY_N_Q = 8
"""Number of Mimi codebooks the tiny LM reads (32 for the real models)."""
TINY_CARD = 64
"""Codebook size of the tiny Mimi quantizer, equal to the LM `card` (2048 for real ones)."""
TINY_EXTRA_HEADS = 4
TINY_EXTRA_HEADS_DIM = 6
AUDIO_DELAY_SECONDS = 0.5
TEXT_PADDING_ID = 3
TEXT_END_PADDING_ID = 0

TINY_MOSHI_N_Q = 8
"""Audio codebooks of the tiny Moshi LM: dep_q for Moshi's voice + n_q - dep_q for the user's."""
TINY_MOSHI_DEP_Q = 4
"""Codebooks generated by the depformer (8 of 16 in the real Moshi 7B)."""
TINY_MOSHI_DELAYS = [0, 0, 1, 1, 1, 0, 1, 1, 1]
"""Text, then Moshi's codebooks, then the user's: the real [0, 0, 1 x 7, 0, 1 x 7] pattern."""

MOSHI_NAME = "model.safetensors"
MIMI_NAME = "mimi.safetensors"
MIMI_CONFIG_NAME = "mimi_config.json"
TOKENIZER_NAME = "tokenizer.model"

_VOCAB_SIZE = 96

_SENTENCES = (
    "the quick brown fox jumps over the lazy dog",
    "hello and welcome to the weekly team meeting",
    "can everyone hear me or should I turn up the volume",
    "let us start with a quick round of updates",
    "the release is planned for the end of next week",
    "we still have three open bugs in the audio pipeline",
    "please share your screen so we can see the dashboard",
    "I think the latency numbers look much better today",
    "the streaming model emits words with a short delay",
    "thank you all for joining and see you on monday",
    "could you repeat the last sentence a little slower",
    "our customers asked for better speaker labels",
    "the transcript should be ready a few seconds after the call",
    "there is a small problem with the microphone in room two",
    "we agreed to review the design document tomorrow morning",
    "she said the numbers were correct after the second check",
    "this is a simple sentence used to train a tiny tokenizer",
    "bonjour tout le monde et merci pour votre attention",
    "the weather is nice so we might take the meeting outside",
    "what time does the next train to the city leave",
    "one two three four five six seven eight nine ten",
    "action items are written down at the bottom of the page",
    "the budget for the next quarter has not been approved yet",
    "let me know if anything is unclear in the proposal",
    "a good summary keeps the decisions and drops the small talk",
    "the new intern starts on tuesday and will join this call",
    "please mute yourself when you are not speaking",
    "we lost the connection for a moment but it is back now",
    "the server handles many streams at the same time",
    "every frame of audio lasts eighty milliseconds",
    "good morning everybody how was your weekend",
    "I will send the notes by email right after this meeting",
)


def _train_tokenizer() -> bytes:
    """A small BPE sentencepiece model with Kyutai's special ids (unk 0, bos 1, eos 2, pad 3)."""
    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_SENTENCES),
        model_writer=buffer,
        model_type="bpe",
        vocab_size=_VOCAB_SIZE,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=TEXT_PADDING_ID,
        num_threads=1,
        minloglevel=2,
    )
    return buffer.getvalue()


def tiny_mimi_config(n_q: int = TINY_N_Q, bins: int = TINY_CARD) -> dict:
    """Mimi at 24 kHz / 12.5 Hz with the real ratios, but a few thousand parameters."""
    dimension = 32
    seanet = {
        "channels": 1,
        "dimension": dimension,
        "causal": True,
        "n_filters": 4,
        "n_residual_layers": 1,
        "activation": "ELU",
        "compress": 2,
        "dilation_base": 2,
        "disable_norm_outer_blocks": 0,
        "kernel_size": 7,
        "residual_kernel_size": 3,
        "last_kernel_size": 3,
        "norm": "none",
        "pad_mode": "constant",
        # prod(ratios) = 960 samples -> 25 Hz, then a learnt stride-2 conv -> 12.5 Hz.
        "ratios": [8, 6, 5, 4],
        "true_skip": True,
    }
    return {
        "sample_rate": 24000,
        "channels": 1,
        "frame_rate": 12.5,
        "seanet": seanet,
        "quantizer": {
            "dimension": 16,
            "n_q": n_q,
            "bins": bins,
            "input_dimension": dimension,
            "output_dimension": dimension,
        },
        "transformer": {
            "d_model": dimension,
            "num_heads": 2,
            "num_layers": 1,
            "causal": True,
            "layer_scale": 0.01,
            "context": 250,
            "conv_layout": True,
            "max_period": 10000,
            "gating": "none",
            "norm": "layer_norm",
            "positional_embedding": "rope",
            "dim_feedforward": 64,
            "input_dimension": dimension,
            "output_dimensions": [dimension],
        },
    }


def _tiny_lm(text_card: int, card: int, n_q: int) -> dict:
    """The `config.json` keys the tiny STT, Moshi and TTS checkpoints share: a 2-layer
    transformer of width 64 with a 1-layer depformer, and the names of the other files."""
    return {
        "card": card,
        "n_q": n_q,
        "text_card": text_card,
        "existing_text_padding_id": TEXT_PADDING_ID,
        "dim": 64,
        "num_heads": 4,
        "num_layers": 2,
        "hidden_scale": 4.125,
        "causal": True,
        "layer_scale": None,
        "gating": "silu",
        "norm": "rms_norm_f32",
        "positional_embedding": "rope",
        "depformer_dim": 32,
        "depformer_num_heads": 2,
        "depformer_num_layers": 1,
        "depformer_multi_linear": True,
        "depformer_pos_emb": "none",
        "depformer_weights_per_step": True,
        "moshi_name": MOSHI_NAME,
        "mimi_name": MIMI_NAME,
        "mimi_config_name": MIMI_CONFIG_NAME,
        "tokenizer_name": TOKENIZER_NAME,
    }


def tiny_stt_config(text_card: int, n_q: int = TINY_N_Q, card: int = TINY_CARD) -> dict:
    """`config.json` with the keys of the real STT configs, at toy sizes."""
    return {
        **_tiny_lm(text_card, card, n_q),
        "dep_q": 0,
        "delays": [0] * (n_q + 1),
        "context": 375,
        "max_period": 100000.0,
        # The depformer keys (here and in _tiny_lm) are unused with dep_q == 0, as in real configs.
        "depformer_dim_feedforward": None,
        "extra_heads_num_heads": TINY_EXTRA_HEADS,
        "extra_heads_dim": TINY_EXTRA_HEADS_DIM,
        "conditioners": {},
        "cross_attention": False,
        "model_id": {"sig": "tiny0000", "epoch": 0},
        "lm_gen_config": {"temp": 0.0, "temp_text": 0.0, "top_k": 250, "top_k_text": 50},
        "stt_config": {
            "audio_silence_prefix_seconds": 0.0,
            "audio_delay_seconds": AUDIO_DELAY_SECONDS,
        },
        "model_type": "stt",
    }


def _lm_kwargs(config: dict) -> dict:
    """The part of config.json that CheckpointInfo hands to LMModel."""
    skipped = {
        "moshi_name",
        "mimi_name",
        "mimi_config_name",
        "tokenizer_name",
        "lora_name",
        "model_type",
        "lm_gen_config",
        "tts_config",
        "stt_config",
        "model_id",
    }
    return {key: value for key, value in config.items() if key not in skipped}


def _calibration_audio(generator: torch.Generator, seconds: float = 8.0) -> torch.Tensor:
    """Noise bursts and tones of varied loudness, [1, 1, T] at 24 kHz."""
    sample_rate = 24000
    segment = sample_rate // 4
    pieces = []
    time = torch.arange(segment) / sample_rate
    for _ in range(int(seconds * 4)):
        gain = 10 ** (-3 * torch.rand((), generator=generator))
        frequency = 80 + 4000 * torch.rand((), generator=generator)
        tone = torch.sin(2 * torch.pi * frequency * time)
        noise = torch.randn(segment, generator=generator)
        mix = torch.rand((), generator=generator)
        pieces.append(gain * (mix * tone + (1 - mix) * noise))
    return torch.cat(pieces)[None, None]


MIMI_CODE_SPACING = 2.0
"""Distance between neighbouring centroids of a tiny Mimi codebook, in units of the rms of
the latent coordinate it quantizes (see `_structure_mimi`)."""
MIMI_DECODED_RMS = 0.1
"""Loudness of the tiny Mimi's decoded audio for random codes."""


@torch.no_grad()
def _structure_mimi(mimi: MimiModel, generator: torch.Generator) -> None:
    """Turns the random Mimi into one whose codes are wide-margin decisions and whose audio
    follows its codes.

    Greedy tests compare codes (and the tokens that follow from them) across batch shapes,
    thread counts and CPUs, which move latents by ~1e-6. Centroids drawn from random latents
    left many latents within that of a Voronoi boundary (near-duplicate centroids, a latent
    mean 5x its spread), so codes flipped. Here the quantizer is a product quantizer in RVQ
    form: the input projections map the latent onto its principal axes (fitted on some audio,
    unit rms each), every codebook level gets its own pair of axes and its centroids are a
    square grid of spacing `MIMI_CODE_SPACING` in that plane (zero elsewhere), so a code only
    changes where a coordinate crosses a grid line. The output projections invert the input
    ones. No biases anywhere: silence encodes to exactly zero, the grid's origin (far from any
    boundary), and decodes to exactly zero; the random biases also drowned the decoder's
    response to its codes (other codes changed the audio by ~2e-5 of its level), so audio
    compared with a tolerance would hardly tell them apart. The last layer is scaled so that
    random codes decode at `MIMI_DECODED_RMS`.
    """
    for name, param in mimi.named_parameters():
        if name.endswith(".bias"):
            param.zero_()
    latent = mimi._encode_to_unquantized_latent(_calibration_audio(generator))[0]  # [C, T]
    u, singular, _ = torch.linalg.svd(latent.double(), full_matrices=False)
    u = u * u[u.abs().argmax(dim=0), range(u.shape[1])].sign()  # a sign convention per axis
    rms = singular / latent.shape[-1] ** 0.5
    side = torch.arange(-4, 4, dtype=torch.float64) * MIMI_CODE_SPACING
    grid = torch.cartesian_prod(side, side)  # 64 points, the origin among them
    axis = 0
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):
        into = torch.zeros(rvq.input_proj.weight.shape[:2], dtype=torch.float64)  # [D, C]
        back = torch.zeros(rvq.output_proj.weight.shape[:2], dtype=torch.float64)  # [C, D]
        assert 2 * len(rvq.vq.layers) <= into.shape[0]
        for level, layer in enumerate(rvq.vq.layers):
            dims, axes = slice(2 * level, 2 * level + 2), slice(axis, axis + 2)
            axis += 2
            into[dims] = (u[:, axes] / rms[axes]).T
            back[:, dims] = u[:, axes] * rms[axes]
            codebook = layer._codebook
            assert codebook.codebook_size == len(grid)
            centroids = torch.zeros(len(grid), into.shape[0], dtype=torch.float64)
            centroids[:, dims] = grid[torch.randperm(len(grid), generator=generator)]
            codebook.embedding_sum.copy_(centroids)
            codebook.cluster_usage.fill_(1.0)
            codebook._initialized.fill_(1.0)
            codebook._embedding = None  # drop the cached centroids
        rvq.input_proj.weight.copy_(into[:, :, None])
        rvq.output_proj.weight.copy_(back[:, :, None])
    codes = torch.randint(len(grid), (1, mimi.num_codebooks, 25), generator=generator)
    last = [m for m in mimi.decoder.modules() if isinstance(m, torch.nn.Conv1d)][-1]
    last.weight.mul_(MIMI_DECODED_RMS / mimi.decode(codes).pow(2).mean().sqrt())


def _mimi_state(mimi_config: dict, generator: torch.Generator) -> dict[str, torch.Tensor]:
    mimi = loaders.get_mimi(None, mimi_config, device="cpu", num_codebooks=TINY_N_Q)
    _structure_mimi(mimi, generator)
    return {key: value.detach().clone().contiguous() for key, value in mimi.state_dict().items()}


def tiny_moshi_config(
    text_card: int, n_q: int = TINY_MOSHI_N_Q, dep_q: int = TINY_MOSHI_DEP_Q, card: int = TINY_CARD
) -> dict:
    """`config.json` of a full-duplex Moshi (the keys of moshi's built-in 7B `_lm_kwargs`)."""
    delays = [0] + [0] + [1] * (dep_q - 1) + [0] + [1] * (n_q - dep_q - 1)
    return {
        **_tiny_lm(text_card, card, n_q),
        "dep_q": dep_q,
        "delays": delays,
        "context": 3000,
        "max_period": 10000,
        "depformer_dim_feedforward": 132,
        "depformer_layer_scale": None,
        "depformer_context": 8,
        "depformer_max_period": 10000,
        "depformer_gating": "silu",
        "model_id": {"sig": "tinymoshi", "epoch": 0},
        "model_type": "moshi",
    }


def _write_checkpoint(directory: Path, seed: int, make_config: Callable[[int], dict]) -> Path:
    """Tokenizer, `make_config(text_card)`, random LM and fitted tiny Mimi into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    tokenizer_bytes = _train_tokenizer()
    (directory / TOKENIZER_NAME).write_bytes(tokenizer_bytes)
    processor = sentencepiece.SentencePieceProcessor(model_proto=tokenizer_bytes)
    text_card = processor.get_piece_size()

    config = make_config(text_card)
    mimi_config = tiny_mimi_config()
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / MIMI_CONFIG_NAME).write_text(json.dumps(mimi_config, indent=2) + "\n")

    threads = torch.get_num_threads()
    # One thread and no torch.compile: the float results (hence the codebooks fitted on
    # them) do not depend on the caller's settings.
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]), no_compile():
            torch.manual_seed(seed)
            generator = torch.Generator().manual_seed(seed + 1)
            lm = loaders.get_moshi_lm(
                None, lm_kwargs=_lm_kwargs(config), device="cpu", dtype=torch.float32
            )
            lm_state = {k: v.detach().clone().contiguous() for k, v in lm.state_dict().items()}
            mimi_state = _mimi_state(mimi_config, generator)
    finally:
        torch.set_num_threads(threads)
    save_file(lm_state, str(directory / MOSHI_NAME))
    save_file(mimi_state, str(directory / MIMI_NAME))
    return directory


def write_tiny_stt_checkpoint(directory: Path, seed: int = 0) -> Path:
    """Writes config.json, model.safetensors (LM), mimi.safetensors, mimi_config.json and
    tokenizer.model (sentencepiece) into `directory`; returns it.

    The files are a deterministic function of `seed` (byte for byte on a given machine and
    torch build); the global torch RNG and thread count are left as they were.
    """
    return _write_checkpoint(directory, seed, lambda text_card: tiny_stt_config(text_card))


def write_tiny_moshi_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A tiny random full-duplex Moshi (speech-to-speech) checkpoint: config.json,
    model.safetensors, mimi.safetensors, mimi_config.json, tokenizer.model.

    Same determinism as `write_tiny_stt_checkpoint`; the Mimi weights hold `TINY_N_Q`
    codebooks, of which `get_mimi` keeps max(dep_q, n_q - dep_q) = `TINY_MOSHI_DEP_Q`.
    """
    return _write_checkpoint(directory, seed, lambda text_card: tiny_moshi_config(text_card))


def load_tiny_stt_checkpoint(
    directory: Path, hf_repo: str = "kyutai/stt-1b-en_fr"
) -> loaders.CheckpointInfo:
    """`CheckpointInfo` for a directory written above, every file given locally (no Hub)."""
    directory = Path(directory)
    return loaders.CheckpointInfo.from_hf_repo(
        hf_repo,
        moshi_weights=directory / MOSHI_NAME,
        mimi_weights=directory / MIMI_NAME,
        tokenizer=directory / TOKENIZER_NAME,
        config_path=directory / "config.json",
        mimi_config_path=directory / MIMI_CONFIG_NAME,
    )


def load_tiny_moshi_checkpoint(directory: Path) -> loaders.CheckpointInfo:
    """`CheckpointInfo` for `write_tiny_moshi_checkpoint`, every file given locally (no Hub)."""
    return load_tiny_stt_checkpoint(directory, hf_repo="kyutai/moshiko-pytorch-bf16")


# --- Kyutai TTS (kyutai/tts-1.6b-en_fr) --------------------------------------------------

TINY_TTS_SPEAKER_DIM = 16
"""Width of a voice embedding (`speaker_wavs` tensor conditioner `dim`; 512 in the real one)."""
TINY_TTS_VOICE_FRAMES = 10
"""Time length of the tiny voice embedding (reportedly 125 in Kyutai's published voices)."""
TTS_AUDIO_DELAY = 1.28
"""`tts_config.audio_delay` in seconds: int(1.28 * 12.5) = 16 steps of text before audio."""
TTS_SECOND_STREAM_AHEAD = 2
TTS_CFG_VALUES = ["1.0", "1.5", "2.0", "2.5", "3.0", "3.5", "4.0"]
TTS_MODEL_ID = {"sig": "tiny7715", "epoch": 0}
TTS_VOICE_NAME = "tiny_voice"


def tiny_tts_config(text_card: int, n_q: int = TINY_N_Q, card: int = TINY_CARD) -> dict:
    """`config.json` with the keys/structure of kyutai/tts-1.6b-en_fr, at toy sizes.

    Real values (as mirrored by third-party ports; the HF file itself was not fetched):
    card 2048, n_q = dep_q = 32, delays [0, 0] + [2] * 31, dim 2048, 16 layers x 16 heads,
    context 500, depformer 1024 x 4 layers, low-rank (128) depformer embeddings, schedule
    range(8) + [8] * 8 + [9] * 8 + [10] * 8, text_card 8000, demux_second_stream true.
    """
    half = n_q // 2
    schedule = list(range(half)) + [half + i // 2 for i in range(n_q - half)]
    return {
        **_tiny_lm(text_card, card, n_q),
        "dep_q": n_q,
        "delays": [0, 0] + [2] * (n_q - 1),
        "context": 500,
        "max_period": 10000,
        "depformer_dim_feedforward": 96,
        "depformer_low_rank_embeddings": 8,
        "demux_second_stream": True,
        "text_card_out": None,
        "cross_attention": True,
        "conditioners": {
            "speaker_wavs": {"type": "tensor", "tensor": {"dim": TINY_TTS_SPEAKER_DIM}},
            "cfg": {
                "type": "lut",
                "lut": {
                    "n_bins": len(TTS_CFG_VALUES),
                    "dim": 16,
                    "tokenizer": "noop",
                    "possible_values": list(TTS_CFG_VALUES),
                },
            },
            "control": {
                "type": "lut",
                "lut": {"dim": 64, "n_bins": 1, "tokenizer": "noop", "possible_values": ["ok"]},
            },
        },
        "fuser": {
            "cross_attention_pos_emb": True,
            "cross_attention_pos_emb_scale": 1,
            "sum": ["control", "cfg"],
            "prepend": [],
            "cross": ["speaker_wavs"],
        },
        "tts_config": {
            "audio_delay": TTS_AUDIO_DELAY,
            "second_stream_ahead": TTS_SECOND_STREAM_AHEAD,
        },
        "model_id": dict(TTS_MODEL_ID),
        "depformer_weights_per_step_schedule": schedule,
        "model_type": "tts",
        "lm_gen_config": {"temp": 0.6, "temp_text": 0.6, "top_k": 250, "top_k_text": 50},
    }


def tiny_tts_voice_path(directory: Path) -> Path:
    """Where `write_tiny_tts_checkpoint` puts its voice: `<name><voice_suffix>`. Local names
    resolve without the Hub: `tts.get_voice_path(str(directory / TTS_VOICE_NAME))` (an existing
    local file wins) or a `"file://..."` name; otherwise it downloads from `voice_repo`."""
    sig, epoch = TTS_MODEL_ID["sig"], TTS_MODEL_ID["epoch"]
    return Path(directory) / f"{TTS_VOICE_NAME}.{sig}@{epoch}.safetensors"


def write_tiny_tts_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A tiny random Kyutai TTS (DSM, like kyutai/tts-1.6b-en_fr) checkpoint plus one voice.

    Writes config.json, model.safetensors, mimi.safetensors, mimi_config.json,
    tokenizer.model and the voice `tiny_tts_voice_path(directory)` (safetensors, one key
    ``"speaker_wavs"``: float32 ``[1, TINY_TTS_SPEAKER_DIM, TINY_TTS_VOICE_FRAMES]``, i.e.
    ``[1, dim, T]``; real voices are ``[1, 512, T]``, reportedly T = 125); returns `directory`.
    Same determinism as `write_tiny_stt_checkpoint`. Load with `load_tiny_tts_checkpoint`.

    Facts (moshi 0.2.13, checked by tests/test_kyutai_tts_checkpoint.py)::

        tts = TTSModel.from_checkpoint_info(info, n_q=8, temp=0.6, cfg_coef=2.0,
                                            device="cpu", dtype=torch.float32)

    ``n_q`` must be <= the LM's (32 real, 8 tiny; TTSModel's default 32 raises here);
    moshi-server uses n_q=24, temp 0.6, cfg_coef 2.0, padding_between 1, max_padding 8,
    initial_padding 2, final_padding 4. The model is not multistream: ``dep_q == n_q``,
    ``lm.n_q - lm.dep_q == 0`` input codebooks, so every step takes ``input_tokens =
    full((B, 0, 1), -1)``. ``tts.delay_steps = int(audio_delay * 12.5)`` = 16;
    ``tts.machine.second_stream_ahead`` = 2; ``lm_gen.max_delay`` = 2 (acoustic delays).

    CFG: the model has a ``cfg`` LUT conditioner (values 1.0 .. 4.0 step 0.5), i.e. it was
    CFG-distilled: ``tts.valid_cfg_conditionings`` is non-empty, so do as moshi-server does:
    ``cfg = tts.cfg_coef; tts.cfg_coef = 1.0`` and pass ``cfg_coef=cfg`` to
    ``make_condition_attributes`` (``generate`` raises if ``tts.cfg_coef != 1`` on such a
    model). No batch doubling then. (Only for a non-distilled model, ``LMGen(cfg_coef != 1)``
    needs ``condition_tensors`` for ``2B`` rows: ``attrs + dropout_all_conditions(attrs)``,
    and masks/resets are repeated x2 internally.)

    Voice: ``attrs = tts.make_condition_attributes([voice_path], cfg_coef=2.0)`` (path must
    end in ``.safetensors``; up to 5 voices, ``max_speakers``; moshi-server passes
    ``[file, file]``); ``tts.get_voice_path(name)`` = ``hf_get(name + voice_suffix,
    voice_repo)`` with ``voice_suffix = f".{sig}@{epoch}.safetensors"`` from ``model_id``.
    ``condition_tensors = lm.condition_provider.prepare_and_provide([attrs_b0, attrs_b1])``
    (one per row, may differ). Per-slot voice change without rebuilding LMGen (moshi-server):
    ``cross = lm.fuser.get_cross(condition_provider.prepare_and_provide([attrs]))`` then for
    every ``StreamingMultiheadAttention`` with ``.cross_attention``: ``k, v =
    m._compute_cross_attention(cross, cross)``; ``m._streaming_state.k_cross[b] = k[0]``
    (same for ``v_cross``). The control/cfg ``sum`` condition is fixed per LMGen.

    Streaming word by word (moshi-server ``rust/moshi-server/tts.py``): ``LMGen(lm,
    temp=.6, temp_text=.6, cfg_coef=1.0, condition_tensors=..., on_text_hook=...,
    on_audio_hook=..., support_out_of_sync=True)``; ``lm_gen.streaming_forever(B)``,
    ``mimi.streaming_forever(B)``. Per slot keep ``state = tts.machine.new_state([])`` and
    an ``offset``. A word is ``Entry(tts.tokenizer.encode(word), word, padding=max(0,
    padding_between + len(tokens) - 1))`` appended to ``state.entries`` (the first word
    of a turn gets the speaker token 1 (``token_ids.main``) prepended; use
    ``tts.prepare_script([text], padding_between=1)`` for whole texts; a pause is
    ``Entry([], "", padding=n_steps)``). The on_text_hook gets the sampled text tokens
    ``[B]`` and must overwrite them in place with ``tts.machine.process(offset_b, state_b,
    token)[0]`` (the second value is True when a word was consumed). The on_audio_hook
    gets ``[B, dep_q]`` and must set ``-1`` (``token_ids.zero``) where ``offset_b <
    delays[1 + q] + delay_steps`` (use ``lm_gen._streaming_state.offsets`` for per-row
    offsets). Each step: ``frame = lm_gen.step(input_tokens)`` -> long ``[B, 1 + dep_q, 1]``
    (``-2`` for masked/too-early rows); ``pcm = mimi.decode(frame[:, 1:].clamp(min=0))``
    -> float32 ``[B, 1, 1920]`` at 24 kHz, valid once ``offset_b - max_delay >=
    delay_steps`` (earlier frames are silence placeholders: the codes are -1/-2).

    Missing words: the machine pops a word when the model asks for one, so a slot may only
    step while it has enough queued: ``len(entries with tokens) >= second_stream_ahead + 1``
    (moshi-server ``ClientState.is_active``; an empty-token pause entry is always enough),
    unless the text is complete. Otherwise do not step it: ``lm_gen.set_exec_mask(m)`` and
    ``mimi.set_exec_mask(m_audio)`` with False for that row (moshi-server flags it
    MISSING_WORDS) and don't advance its offset. End of stream: once the client has sent
    all words, the machine sets ``state.end_step`` when the model asks for a word and none is
    left; the slot is done when ``offset >= end_step + delay_steps + final_padding +
    max_delay`` (moshi-server's IS_EOS). New request in slot b: ``client.state =
    machine.new_state([])``, offset 0, ``lm_gen.reset_streaming(mask)``,
    ``mimi.reset_streaming(mask)`` (mask True at b).

    Word timing: ``state.transcript`` = ``[(entry.text, step)]`` and
    ``state.consumption_times`` (steps at which each entry, pauses included, was popped);
    ``step`` is the slot offset at that call, in 80 ms frames of *text* time. Audio lags by
    ``delay_steps``: the word starts about ``(step - delay_steps) / 12.5`` s into the audio
    counted from the first valid PCM frame; it stops where the next word starts (no explicit
    stop time; moshi's ``TTSResult.all_transcripts`` is the same data). moshi-server's
    WORD_FINISHED flag fires on each consumption.
    """
    directory = _write_checkpoint(directory, seed, lambda text_card: tiny_tts_config(text_card))
    generator = torch.Generator().manual_seed(seed + 2)
    voice = torch.randn(1, TINY_TTS_SPEAKER_DIM, TINY_TTS_VOICE_FRAMES, generator=generator)
    save_file({"speaker_wavs": voice.contiguous()}, str(tiny_tts_voice_path(directory)))
    return directory


def load_tiny_tts_checkpoint(directory: Path) -> loaders.CheckpointInfo:
    """`CheckpointInfo` for `write_tiny_tts_checkpoint`, every file given locally (no Hub)."""
    return load_tiny_stt_checkpoint(directory, hf_repo="kyutai/tts-1.6b-en_fr")


# --- How far greedy decisions are from flipping ------------------------------------------


MIN_CODE_MARGIN = 2e-4
"""Closest a test's latent may come to the edge of its code's cell, in codebook units: over
60x how far latents move between batch shapes, thread counts and CPU kernels (AVX-512, AVX2,
SSE4; at most 3e-6 measured on the tiny checkpoints)."""
MIN_TOKEN_MARGIN = 2e-5
"""Narrowest top-1 minus top-2 logit gap a test's greedy choice may have, over the row's largest
|logit|: 25x how far logits move between them (at most 8e-7 measured)."""


@dataclass
class DecisionMargins:
    """The narrowest greedy decisions of a run (see `recording_margins`)."""

    code: float = math.inf
    """Smallest distance from a latent to the edge of its code's cell, in codebook units (the
    rms of a latent coordinate on the calibration audio for the tiny Mimi)."""
    token: float = math.inf
    """Smallest top-1 minus top-2 logit of a greedy choice, over the row's largest |logit|."""
    codes: int = 0
    tokens: int = 0

    def assert_wide(self) -> None:
        """Fails if a decision came closer to a tie than `MIN_CODE_MARGIN` / `MIN_TOKEN_MARGIN`:
        then runs that must match exactly may differ on another CPU."""
        assert self.codes or self.tokens, "no decision recorded"
        assert self.code >= MIN_CODE_MARGIN, f"a latent {self.code:.1e} from its code's edge"
        assert self.token >= MIN_TOKEN_MARGIN, f"a greedy token {self.token:.1e} from a tie"


@contextmanager
def recording_margins() -> Iterator[DecisionMargins]:
    """Records every Mimi code choice and greedy LM token choice made inside the block.

    Float noise (another batch shape, thread count or CPU) moves latents by up to ~3e-6
    codebook units and logits by up to ~1e-6 of their scale; a decision closer than that to
    its boundary may go the other way, and every later step with it. Rows masked out by an
    exec mask are recorded too (their inputs are dummies): record runs where all rows step.
    """
    margins = DecisionMargins()
    quantize = EuclideanCodebook._quantize
    sample_token = moshi.models.lm.sample_token

    def recorded_quantize(self: EuclideanCodebook, x: torch.Tensor) -> torch.Tensor:
        centroids = self.embedding.detach().double()
        squared = torch.cdist(x.detach().double()[None], centroids[None])[0] ** 2  # [N, K]
        nearest = squared.argmin(dim=-1)
        # Distance to the bisector with each other centroid; the cell's edge is the nearest.
        apart = torch.cdist(centroids[nearest][None], centroids[None])[0]
        to_edge = (squared - squared.gather(1, nearest[:, None])) / (2 * apart)
        to_edge[apart == 0] = 0.0  # a duplicate centroid: a tie
        to_edge.scatter_(1, nearest[:, None], math.inf)
        margins.code = min(margins.code, float(to_edge.min()))
        margins.codes += len(x)
        return quantize(self, x)

    def recorded_sample_token(
        logits: torch.Tensor, use_sampling: bool = False, temp: float = 1.0, *args: object
    ) -> torch.Tensor:
        if not use_sampling or temp <= 0.0:
            rows = logits.detach().double().reshape(-1, logits.shape[-1])
            top = rows.topk(2, dim=-1).values
            gap = (top[:, 0] - top[:, 1]) / rows.abs().max(dim=-1).values
            margins.token = min(margins.token, float(gap.min()))
            margins.tokens += len(rows)
        return sample_token(logits, use_sampling, temp, *args)  # type: ignore[arg-type]

    EuclideanCodebook._quantize = recorded_quantize  # type: ignore[method-assign]
    moshi.models.lm.sample_token = recorded_sample_token  # type: ignore[assignment]
    try:
        yield margins
    finally:
        EuclideanCodebook._quantize = quantize  # type: ignore[method-assign]
        moshi.models.lm.sample_token = sample_token


class LocalSlot:
    """A server slot without the server, to drive a backend in-process: `inputs` are taken by
    the backend at its next step, what it emits collects in `out`."""

    def __init__(self, index: int, inputs: list[object]) -> None:
        self.index = index
        self.channel_id = index + 1
        self.inputs = inputs
        self.out: list[object] = []
        self.backed_up = False  # what it emits is always taken at once

    def take_inputs(self) -> list[object]:
        inputs, self.inputs = self.inputs, []
        return inputs

    def emit(self, message: object) -> None:
        self.out.append(message)
