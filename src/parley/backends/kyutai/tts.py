"""Kyutai streaming TTS (moshi's `TTSModel`: a delayed-streams LM + Mimi), batched over slots.

The loop of moshi-server's Python TTS module: each slot has a `StateMachine` state whose entries
are the words received so far; `LMGen`'s text hook lets each slot's state machine rewrite the
sampled text token (consume the next word, pad, or end), and its audio hook silences the
codebooks that are still inside the model's delay. A slot steps only while it has enough words
queued ahead (`second_stream_ahead + 1`) or its text is complete; otherwise it is masked out and
counted as a missing-words step. Audio frames start `delay_steps + max_delay` steps into a
stream; each word's `Text` goes out just before the frame where it starts (text step / 12.5 s),
and the stream ends `final_padding` steps after the state machine's end step.

Voices: embedding files (a folder of them, plus the default). Each voice's conditioning
(summed cfg condition, cross-attention source) is computed once; when a session takes a slot its
voice is written into that row of `LMGen`'s condition tensors and of every cross-attention
layer's cached keys/values (moshi-server swaps voices the same way), so slots speak with
different voices in one batch. CFG-distilled checkpoints take `cfg_coef` as a condition (no
batch doubling). A session may also send its own embedding (`Voice` message, before any text):
it gets the same treatment, if its shape is the voices' shape.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from parley import metrics
from parley.backends.kyutai.checkpoint import (
    CheckpointFiles,
    CheckpointOptions,
    find_files,
    load_checkpoint,
    prepare_torch,
    torch_dtype,
)
from parley.backends.kyutai.streams import MoshiRows
from parley.backends.tts.text import normalize_word
from parley.engine.backend import FRAME_SAMPLES, SAMPLE_RATE_HZ
from parley.engine.messages import ErrorMessage
from parley.engine.options import BackendType, option
from parley.engine.slots import Slot
from parley.engine.speech import (
    AudioFrame,
    EndOfText,
    Flush,
    SpeechBackend,
    SpeechConfig,
    SpeechEnd,
    SpokenWord,
    TextPiece,
    VoiceEmbedding,
)

log = logging.getLogger(__name__)

FRAME_S = FRAME_SAMPLES / SAMPLE_RATE_HZ
PADDING_BETWEEN = 1  # moshi-server: padding steps after each word, beyond its tokens


@dataclass
class _Stream:
    slot: Slot
    state: Any  # moshi.models.tts.State
    voice: str = ""
    offset: int = 0
    complete: bool = False
    first_word: bool = True
    done: bool = False
    frames_sent: int = 0
    words_seen: int = 0
    pending_words: deque[list[Any]] = field(default_factory=deque)  # [text, start_s, stop_s]


class KyutaiTtsBackend(MoshiRows, SpeechBackend):
    metrics_prefix = "py"
    attribution = ("Kyutai", "https://github.com/kyutai-labs/delayed-streams-modeling")

    def voice_languages(self, voice: str) -> list[str]:
        return ["en", "fr"]  # tts-1.6b-en_fr's

    takes_voice_embeddings = True

    def __init__(
        self,
        files: CheckpointFiles,
        voices: dict[str, Path],
        default_voice: str,
        batch_size: int,
        device: str = "cpu",
        dtype: str = "float32",
        n_q: int = 24,
        temp: float = 0.6,
        cfg_coef: float = 2.0,
        cpu_threads: int = 1,
        name: str = "tts",
    ) -> None:
        torch = prepare_torch(device, cpu_threads)
        from moshi.models.lm import LMGen
        from moshi.models.tts import TTSModel

        self.files = files
        self.device = device
        info = load_checkpoint(files)
        n_q = min(n_q, int(info.lm_config["n_q"])) if info.lm_config else n_q
        self.model = TTSModel.from_checkpoint_info(
            info, n_q=n_q, temp=temp, cfg_coef=cfg_coef, device=device,
            dtype=torch_dtype(torch, dtype),
        )  # fmt: skip
        self.machine = self.model.machine
        self.lm, self.mimi = self.model.lm, self.model.mimi
        self.voices = voices
        self.default_voice = default_voice
        # CFG-distilled checkpoints take the coefficient as a condition (no batch doubling).
        distilled = bool(self.model.valid_cfg_conditionings)
        self.model.cfg_coef = 1.0 if distilled else cfg_coef
        provider = self.lm.condition_provider
        assert provider is not None, "a Kyutai TTS checkpoint has conditioners (voice, cfg)"
        self._cfg_condition = cfg_coef if distilled else None
        attributes = {
            name: self.model.make_condition_attributes([path], cfg_coef=self._cfg_condition)
            for name, path in voices.items()
        }
        self._conditions: dict[str, Any] = {
            name: provider.prepare_and_provide([a]) for name, a in attributes.items()
        }
        shapes = {n: _shapes(self.lm, c) for n, c in self._conditions.items()}
        if len(set(shapes.values())) > 1:
            raise ValueError(f"voice embeddings differ in shape: {shapes}")
        from safetensors.torch import load_file

        self.embedding_shape = tuple(load_file(str(voices[default_voice]))["speaker_wavs"].shape)
        conditions = provider.prepare_and_provide([attributes[default_voice]] * batch_size)
        self._streams: list[_Stream | None] = [None] * batch_size
        self._active = [False] * batch_size
        self.lm_gen = LMGen(
            self.lm,
            temp=temp,
            temp_text=temp,
            cfg_coef=1.0,
            condition_tensors=conditions,
            on_text_hook=self._on_text,
            on_audio_hook=self._on_audio,
            support_out_of_sync=True,
        )
        self._start_streaming(torch, batch_size)
        self._input = torch.full(
            (batch_size, self.lm.n_q - self.lm.dep_q, 1), self.machine.token_ids.zero
        )
        self._row_voice: list[str] = [default_voice] * batch_size
        self._labels = {"module": name}

    def describe(self) -> dict[str, Any]:
        return {
            "voices": sorted(self.voices),
            "default_voice": self.default_voice,
            "sample_rate_hz": SAMPLE_RATE_HZ,
            "model": str(self.files.moshi_weight),
            "device": self.device,
        }

    def warmup(self) -> None:
        """One short utterance through the whole pipeline, then every row is reset."""
        silent: Any = _SilentSlot()
        s = _Stream(silent, self.machine.new_state([]), voice=self.default_voice)
        self._add_words(s, "Hello there.")
        s.complete = True
        self._streams[0] = s
        for _ in range(500):
            if s.done:
                break
            self.step([])
        self._streams[0] = None
        self._reset_all()

    # --- hooks called inside LMGen.step --------------------------------------------------
    def _on_text(self, text_tokens: Any) -> None:
        out = []
        for b, token in enumerate(text_tokens.tolist()):
            s = self._streams[b]
            if not self._active[b] or s is None:
                out.append(token)
                continue
            new_token, _ = self.machine.process(s.offset, s.state, token)
            out.append(new_token)
        text_tokens[:] = self._torch.tensor(out, dtype=text_tokens.dtype)

    def _on_audio(self, audio_tokens: Any) -> None:
        delays = self.lm_gen.delays_cuda[1 : 1 + self.lm.dep_q]
        state = self.lm_gen._streaming_state
        assert state is not None
        offsets = state.offsets
        silent = offsets[:, None] < delays + self.model.delay_steps
        audio_tokens.masked_fill_(silent, self.machine.token_ids.zero)

    # --- slots ---------------------------------------------------------------------------
    def attach(self, slot: Slot) -> None:
        self._streams[slot.index] = None  # created on the session's SpeechConfig
        self._reset_later(slot.index)

    def detach(self, index: int) -> None:
        s = self._streams[index]
        if s is not None and s.voice.startswith("#"):
            self._conditions.pop(s.voice, None)  # a session's own embedding
        self._streams[index] = None
        self._active[index] = False

    def _add_embedding(self, channel_id: int, voice: VoiceEmbedding) -> str:
        """Conditioning for a session's own voice embedding; its key in `_conditions`."""
        import tempfile

        from safetensors.torch import save_file

        shape = tuple(voice.shape)
        if shape != self.embedding_shape or voice.embeddings.size != int(np.prod(shape)):
            raise ValueError(
                f"voice embedding of shape {list(shape)} with {voice.embeddings.size} values; "
                f"this model takes shape {list(self.embedding_shape)}"
            )
        tensor = self._torch.from_numpy(voice.embeddings.reshape(shape).astype(np.float32))
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "voice.safetensors"  # moshi reads voices from files
            save_file({"speaker_wavs": tensor.contiguous()}, str(path))
            attributes = self.model.make_condition_attributes([path], cfg_coef=self._cfg_condition)
        provider = self.lm.condition_provider
        assert provider is not None
        key = f"#embedding-{channel_id}"
        self._conditions[key] = provider.prepare_and_provide([attributes])
        return key

    def step(self, slots: Sequence[Slot]) -> bool:
        torch = self._torch
        for slot in slots:
            self._take_inputs(slot)
        self._apply_resets()
        for b, s in enumerate(self._streams):
            if s is not None and s.voice != self._row_voice[b]:
                self._set_row_voice(b, s.voice)
        lookahead = self.machine.second_stream_ahead
        for b, s in enumerate(self._streams):
            self._active[b] = bool(
                s is not None
                and not s.done
                and not s.slot.backed_up
                and ready_to_step(s.state, s.complete, lookahead)
            )
            if s is None or s.done or s.slot.backed_up:
                continue
            if not self._active[b] and s.state.entries:
                metrics.TTS_MISSING_WORDS_STEPS.labels(**self._labels).inc()
        metrics.TTS_TOTAL_STEPS.labels(**self._labels).inc()
        if not any(self._active):
            return False
        metrics.TTS_ACTIVE_STEPS.labels(**self._labels).inc()
        first_audio = self.model.delay_steps + self.lm_gen.max_delay
        audible = [
            self._active[b] and s is not None and s.offset >= first_audio
            for b, s in enumerate(self._streams)
        ]
        with torch.no_grad():
            self.lm_gen.set_exec_mask(torch.tensor(self._active))
            self.mimi.set_exec_mask(torch.tensor(audible))
            frame = self.lm_gen.step(self._input)
            assert frame is not None  # support_out_of_sync: never None
            pcm = self.mimi.decode(frame[:, 1:].clamp(min=0)).float().cpu().numpy()
        for b, s in enumerate(self._streams):
            if s is None or not self._active[b]:
                continue
            self._collect_words(s)
            if audible[b]:
                self._send_frame(s, pcm[b, 0])
            s.offset += 1
            end = s.state.end_step
            if s.complete and end is not None:
                if s.offset >= end + self.model.delay_steps + self.model.final_padding + (
                    self.lm_gen.max_delay
                ):
                    self._finish(s)
        return any(self._active)

    def _take_inputs(self, slot: Slot) -> None:
        s = self._streams[slot.index]
        for item in slot.take_inputs():
            if isinstance(item, SpeechConfig):
                if item.voice not in self.voices:
                    slot.emit(ErrorMessage(f"unknown voice {item.voice!r}"))
                    continue
                s = _Stream(slot, self.machine.new_state([]), voice=item.voice)
                self._streams[slot.index] = s
            elif s is None or s.done:
                continue
            elif isinstance(item, TextPiece):
                self._add_words(s, item.text)
            elif isinstance(item, EndOfText | Flush):
                s.complete = s.complete or isinstance(item, EndOfText)
            elif isinstance(item, VoiceEmbedding):
                try:
                    s.voice = self._add_embedding(slot.channel_id, item)
                except ValueError as exc:
                    slot.emit(ErrorMessage(str(exc)))
                    s.done = True

    def _set_row_voice(self, b: int, voice: str) -> None:
        """Writes `voice` into batch row `b` of the conditioning and cached cross-attention."""
        from moshi.modules.transformer import StreamingMultiheadAttention

        state = self.lm_gen._streaming_state
        assert state is not None
        tensors = self._conditions[voice]
        fuser = self.lm.fuser
        with self._torch.no_grad():
            summed = fuser.get_sum(tensors) if fuser is not None else None
            cross = fuser.get_cross(tensors) if fuser is not None else None
            if summed is not None and state.condition_sum is not None:
                state.condition_sum[b] = summed[0].to(state.condition_sum.dtype)
            if cross is not None and state.condition_cross is not None:
                row = cross.to(state.condition_cross.dtype)
                state.condition_cross[b] = row[0]
                for module in self.lm.modules():
                    if not isinstance(module, StreamingMultiheadAttention):
                        continue
                    mha = module._streaming_state
                    if not module.cross_attention or mha is None or mha.k_cross is None:
                        continue
                    assert mha.v_cross is not None
                    k, v = module._compute_cross_attention(row, row)
                    mha.k_cross[b] = k[0]
                    mha.v_cross[b] = v[0]
        self._row_voice[b] = voice

    def _add_words(self, s: _Stream, text: str) -> None:
        from moshi.models.tts import Entry

        for raw in text.split():
            for word in normalize_word(raw):
                tokens = self.model.tokenizer.encode(word)
                if s.first_word:
                    tokens.insert(0, self.machine.token_ids.main)
                    s.first_word = False
                padding = PADDING_BETWEEN + len(tokens) - 1
                s.state.entries.append(Entry(tokens, word, padding=padding))

    def _collect_words(self, s: _Stream) -> None:
        """Words the state machine consumed since the last step, with their times."""
        for word, step in s.state.transcript[s.words_seen :]:
            start_s = round(step * FRAME_S, 3)
            if s.pending_words and s.pending_words[-1][2] is None:
                s.pending_words[-1][2] = start_s
            s.pending_words.append([word, start_s, None])
        s.words_seen = len(s.state.transcript)

    def _send_frame(self, s: _Stream, pcm: np.ndarray) -> None:
        frame_end_s = (s.frames_sent + 1) * FRAME_S
        while s.pending_words and s.pending_words[0][1] < frame_end_s:
            if s.pending_words[0][2] is None and len(s.pending_words) == 1:
                end = s.state.end_step
                if end is None:
                    break  # its end is not known yet; it goes with a later frame
                s.pending_words[0][2] = round(end * FRAME_S, 3)
            text, start_s, stop_s = s.pending_words.popleft()
            s.slot.emit(SpokenWord(text, start_s, max(start_s, stop_s)))
        s.slot.emit(AudioFrame(pcm.astype(np.float32, copy=True)))
        s.frames_sent += 1

    def _finish(self, s: _Stream) -> None:
        end = s.state.end_step or s.offset
        for text, start_s, stop_s in s.pending_words:
            stop = stop_s if stop_s is not None else round(end * FRAME_S, 3)
            s.slot.emit(SpokenWord(text, start_s, max(start_s, stop)))
        s.pending_words.clear()
        s.slot.emit(SpeechEnd())
        s.done = True


class _SilentSlot:
    """Stands in for a session during warm-up: row 0, output dropped."""

    index = 0
    channel_id = 0
    backed_up = False

    def emit(self, message: Any) -> None:
        pass


def _shapes(lm: Any, tensors: Any) -> tuple[Any, ...]:
    fuser = lm.fuser
    summed = fuser.get_sum(tensors) if fuser is not None else None
    cross = fuser.get_cross(tensors) if fuser is not None else None
    return tuple(None if t is None else tuple(t.shape) for t in (summed, cross))


def find_voices(voice: str, voices_dir: str) -> tuple[dict[str, Path], str]:
    """All voices (name -> file) and the default's name: `voice` is a file or a name in
    `voices_dir`; every `.safetensors` under `voices_dir` is a voice, named by its path there."""
    voices: dict[str, Path] = {}
    if voices_dir:
        root = Path(voices_dir).expanduser()
        if not root.is_dir():
            raise ValueError(f"voices_dir: directory {root} does not exist")
        for path in sorted(root.rglob("*.safetensors")):
            rel = path.relative_to(root)
            voices[str(rel.parent / voice_name(path)).removeprefix("./")] = path
    as_file = Path(voice).expanduser()
    if as_file.is_file():
        voices.setdefault(voice_name(as_file), as_file)
        return voices, voice_name(as_file)
    if voice in voices:
        return voices, voice
    raise ValueError(f"voice: {voice!r} is neither a file nor a voice in voices_dir")


def ready_to_step(state: Any, complete: bool, lookahead: int) -> bool:
    """moshi-server's rule: step only with enough words queued ahead, or at a pause, or when
    the client has sent all its text."""
    if complete:
        return True
    if not state.entries:
        return False
    if not state.entries[0].tokens:
        return True
    return sum(1 for e in state.entries if e.tokens) >= lookahead + 1


def voice_name(path: Path) -> str:
    """The name clients use for a voice file: without `.safetensors` and the model's
    `.{signature}@{epoch}` suffix (Kyutai's `expresso/...334s.wav.1e68beda@240.safetensors` is
    asked for as `...334s.wav`)."""
    import re

    name = path.name.removesuffix(".safetensors")
    return re.sub(r"\.[0-9a-zA-Z]+@\d+$", "", name)


@dataclass
class KyutaiTtsOptions(CheckpointOptions):
    voice: str = option("", "the default voice: an embedding file, or a name in voices_dir")
    voices_dir: str = option("", "a folder of voice embeddings (.safetensors)")
    n_q: int = option(24, "audio codebooks generated (moshi-server uses 24 of 32)")
    temp: float = option(0.6, "sampling temperature")
    cfg_coef: float = option(2.0, "classifier-free guidance")

    def problems(self) -> list[tuple[str, str]]:
        missing = [] if self.voice else [("voice", "required (a voice embedding file or a name)")]
        return missing + super().problems()


def build(name: str, batch_size: int, o: KyutaiTtsOptions) -> KyutaiTtsBackend:
    files = find_files(vars(o))
    voice_files, default_voice = find_voices(o.voice, o.voices_dir)
    log.info("module %s: loading Kyutai TTS %s on %s", name, files.moshi_weight, o.device)
    return KyutaiTtsBackend(
        files,
        voice_files,
        default_voice,
        batch_size,
        device=o.device,
        dtype=o.dtype,
        n_q=o.n_q,
        temp=float(o.temp),
        cfg_coef=float(o.cfg_coef),
        cpu_threads=o.cpu_threads,
        name=name,
    )


KYUTAI_TTS = BackendType("KyutaiTts", "speech", "/api/tts_streaming", KyutaiTtsOptions, build)
