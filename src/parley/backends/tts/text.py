"""Text arriving piece by piece -> phrases ready to synthesise.

Clients send text in two shapes: whole words, one per message (moshi's TTS protocol), or LLM
token pieces whose spaces carry the word boundaries (the `/ws/stream` token socket). Both land
in one raw buffer; a word is complete once whitespace follows it (or the client ends a word or
flushes). Complete words gather into the current phrase, which is released for synthesis when:

- a word ends a sentence (`.!?` and CJK forms), or a pause (`,;:` and CJK forms) once the
  phrase has a few words (a one-word phrase is too little audio to keep a listener busy);
- the phrase reaches its word or character limit (a cap for text without punctuation);
- the backend cuts it: the first phrase once its sentence end has not come within the
  first-audio time budget (`release_first_phrase`), a later one when the listener is about
  to run out of audio (`release_words`);
- a `<break time="..."/>` tag arrives (the tag becomes silence after the phrase);
- the client flushes or ends the stream.

A phrase cut where the text has no punctuation (a limit, a listener running out) does not end
on a word that leads into the next ("the glass if | the weather"): Piper says such a phrase-final
word almost inaudibly (measured: "if" at RMS 0.002 against 0.1 mid-phrase), so trailing
connectives wait for the next phrase.

Piper gives every phrase phrase-final prosody, so a cut inside a sentence may cost
intelligibility at the join (issue 16 reported a round trip through tiny.en of WER 0.125 with
the first phrase cut at 10 words against 0.075 for whole sentences; not reproduced here, where
both were within the run-to-run noise: README, issue 16). So no phrase, the first included,
is cut at a word count by itself: a sentence already received is synthesised whole, and only
the backend, which knows the time, cuts a phrase early.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

SENTENCE_END = ".!?。！？"
PAUSE = ",;:，、；："
BOUNDARY = SENTENCE_END + PAUSE + "…"
# CJK punctuation is not followed by a space; a space after it makes it a word boundary.
_CJK_BOUNDARY = re.compile(r"([。！？，、；：])")
_BREAK_TAG = re.compile(
    r"<break\s+time\s*=\s*[\"']?\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*[\"']?\s*/?>", re.IGNORECASE
)
MAX_TAG_CHARS = 80
# Longer runs without a space are spoken in pieces of this many characters (the longest
# dictionary words are ~45 letters; URLs and pasted data are not words).
MAX_WORD_CHARS = 64
MAX_BREAK_S = 10.0
# Articles, conjunctions and prepositions: words that lead into the word after them.
CONNECTIVES = frozenset(
    "a an the and or but nor so if than that as because while when whether although though "
    "unless until to of in on at for with from by into onto about over under between through "
    "without within after before my your his her its our their this these those".split()
)
_DROPPED = str.maketrans({"–": None, "—": None, "(": None, ")": None, "’": "'", "‘": "'"})


def normalize_word(word: str) -> list[str]:
    """One raw word -> the words to speak (moshi's rules: quotes, dashes, parentheses, ':')."""
    return word.translate(_DROPPED).replace(":", " ").split()


def ends_phrase(word: str) -> bool:
    return word.rstrip("\"'”)]*").endswith(tuple(BOUNDARY))


def ends_sentence(word: str) -> bool:
    return word.rstrip("\"'”)]*").endswith(tuple(SENTENCE_END + "…"))


@dataclass
class Phrase:
    """Words to synthesise together, then `pause_s` of silence."""

    words: list[str] = field(default_factory=list)
    pause_s: float = 0.0

    @property
    def text(self) -> str:
        return " ".join(self.words)


class PhraseBuffer:
    def __init__(
        self,
        first_phrase_words: int = 10,
        max_phrase_words: int = 24,
        max_phrase_chars: int = 200,
        min_pause_words: int = 3,
    ) -> None:
        self.first_phrase_words = first_phrase_words
        self.min_pause_words = min_pause_words  # "Well," alone is too little audio to start on
        self.max_phrase_words = max_phrase_words
        self.max_phrase_chars = max_phrase_chars
        self._raw = ""
        self._current = Phrase()
        self._ready: list[Phrase] = []
        self.phrases_released = 0

    @property
    def pending_chars(self) -> int:
        """Text received but not yet released as a phrase."""
        return len(self._raw) + len(self._current.text)

    @property
    def pending_words(self) -> int:
        """Complete words waiting in the current phrase."""
        return len(self._current.words)

    @property
    def has_pending(self) -> bool:
        return bool(self._raw.strip() or self._current.words or self._current.pause_s)

    def add(self, text: str, whole_words: bool = False) -> None:
        """Appends raw text; `whole_words` closes the word (one word per message protocols)."""
        self._raw += _CJK_BOUNDARY.sub(r"\1 ", text)
        if whole_words:
            self._raw += " "
        self._parse(final=False)

    def flush(self) -> None:
        """Everything received so far becomes ready, the partial last word included."""
        self._parse(final=True)
        self._release()

    def release_first_phrase(self) -> bool:
        """Releases the first phrase now if it has `first_phrase_words` complete words (its
        sentence end is too long in coming for the first audio). True if it was released."""
        if self.phrases_released or len(self._current.words) < self.first_phrase_words:
            return False
        self._release(carry_connectives=True)
        return True

    def release_words(self) -> bool:
        """Releases the complete words waiting as a phrase now (a listener is about to run out
        of audio); the partial last word stays. True if a phrase was released."""
        if not self._current.words:
            return False
        self._release(carry_connectives=True)
        return True

    def take_ready(self) -> list[Phrase]:
        ready, self._ready = self._ready, []
        return ready

    # ---------------------------------------------------------------------------------------
    def _parse(self, final: bool) -> None:
        # One pass with an index: what stays in `_raw` is at most an unfinished word
        # (MAX_WORD_CHARS) or tag, so parsing is linear in the text received, however it is cut.
        raw, pos, n = self._raw, 0, len(self._raw)
        while True:
            while pos < n and raw[pos].isspace():
                pos += 1
            if pos == n:
                self._raw = ""
                return
            if raw[pos] == "<":
                tag = _BREAK_TAG.match(raw, pos)
                if tag is not None:
                    value = float(tag.group(1))
                    seconds = value / 1000 if (tag.group(2) or "s").lower() == "ms" else value
                    self._current.pause_s += min(seconds, MAX_BREAK_S)
                    self._release()
                    pos = tag.end()
                    continue
                if not final and _could_become_tag(raw[pos : pos + MAX_TAG_CHARS + 1]):
                    self._raw = raw[pos:]
                    return  # wait for the rest of the tag
            end = _word_end(raw, pos)
            if end is None:  # the last word may still grow
                rest = raw[pos:]
                if final or (ends_phrase(rest) and _letter_before_punctuation(rest)):
                    # (not final: "Hello world" + "!" from a token stream; no space will follow)
                    self._add_word(rest)
                    rest = ""
                self._raw = rest
                return
            self._add_word(raw[pos:end])
            pos = end

    def _add_word(self, raw_word: str) -> None:
        words = normalize_word(raw_word)
        self._current.words.extend(words)
        n = len(self._current.words)
        if ends_sentence(raw_word) or (ends_phrase(raw_word) and n >= self.min_pause_words):
            self._release()
        elif n >= self.max_phrase_words or len(self._current.text) >= self.max_phrase_chars:
            # A sentence this long is cut somewhere anyway: the first cut comes early, so the
            # first audio does not wait for a whole capped phrase.
            first = self.first_phrase_words if self.phrases_released == 0 else None
            self._release(carry_connectives=True, at=first)

    def _release(self, carry_connectives: bool = False, at: int | None = None) -> None:
        """The current phrase (its first `at` words if given) becomes ready; the rest starts
        the next phrase. With `carry_connectives`, trailing connectives of the released part
        go to the next phrase too (unless the part is nothing else)."""
        words = self._current.words
        cut = len(words) if at is None else min(at, len(words))
        if carry_connectives:
            keep = cut
            while keep > 0 and _is_connective(words[keep - 1]):
                keep -= 1
            if keep > 0:
                cut = keep
        self._current.words, rest = words[:cut], words[cut:]
        if self._current.words or self._current.pause_s:
            self._ready.append(self._current)
            self.phrases_released += 1
        self._current = Phrase(rest)


def _is_connective(word: str) -> bool:
    return word.strip("\"'”“()[]*").lower() in CONNECTIVES


def _word_end(text: str, start: int) -> int | None:
    """Where the word starting at `start` ends (whitespace, or a `<` that may start a break
    tag), or None if it may still grow. A word is cut after MAX_WORD_CHARS: one long "word"
    would otherwise be phonemised and synthesised whole (gigabytes for a few thousand letters)."""
    stop = min(len(text), start + MAX_WORD_CHARS)
    for i in range(start, stop):
        ch = text[i]
        if ch.isspace() or (ch == "<" and i > start):
            return i
    return stop if len(text) - start > MAX_WORD_CHARS else None


def _could_become_tag(text: str) -> bool:
    """True while `text` may still be the start of a `<break .../>` tag."""
    if len(text) > MAX_TAG_CHARS or ">" in text:
        return False
    lower = text.lower()
    return lower.startswith("<break") or "<break".startswith(lower)


def _letter_before_punctuation(word: str) -> bool:
    core = word.rstrip("\"'”)]*" + BOUNDARY)
    return bool(core) and core[-1].isalpha()
