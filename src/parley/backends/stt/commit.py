"""When a word of a re-decoded window is final: the LocalAgreement-2 commit policy.

Whisper re-transcribes a growing window; its last words change as more audio arrives. A word
is committed (sent to the client, never retracted) once two consecutive decodes agree on it
and on every word before it, or, optionally, once a single decode is confident of it and has
heard enough audio after it (each decode cycle a word waits costs its latency). At an
utterance end (the VAD hears a pause) or a flush (a client `Marker`) the last decode is taken
whole. Times are seconds of stream time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

OVERLAP_TOLERANCE_S = 0.1  # word times jitter between decodes
PROMPT_WORDS = 30
_NON_WORD = re.compile(r"[^\w']+")
_ENDING = re.compile(_NON_WORD.pattern + "$")


@dataclass(frozen=True)
class TimedWord:
    text: str
    start_s: float
    stop_s: float
    probability: float = 1.0  # the decoder's, for the commit rule


def _key(text: str) -> str:
    return _NON_WORD.sub("", text.lower().replace("\u2019", "'"))


def _ending(text: str) -> str:
    """The punctuation after a word's last letter or digit."""
    found = _ENDING.search(text)
    return found.group() if found else ""


class LocalAgreement:
    """Commit state of one stream. `in_window` holds the committed words whose audio is still
    in the window being re-decoded; the decoder gets them as a forced prefix, so every
    hypothesis it returns holds only words after them."""

    def __init__(
        self,
        confident_p: float = 2.0,
        confident_margin_s: float = 0.5,
        followed_margin_s: float | None = None,
    ) -> None:
        self.confident_p = confident_p  # above 1: every word waits for a second decode
        self.confident_margin_s = confident_margin_s
        # The margin for a word the decoder heard the next word after, as sure of that one.
        self.followed_margin_s = (
            confident_margin_s if followed_margin_s is None else followed_margin_s
        )
        self.committed: list[TimedWord] = []
        self.in_window: list[TimedWord] = []
        self.pending: list[TimedWord] = []  # the last decode's uncommitted words
        self.committed_end_s = 0.0

    def prompt(self) -> str:
        """Committed text before the window: context for the decoder. Words still inside the
        window stay out, or Whisper sees them as already said and skips their audio."""
        before = self.committed[: len(self.committed) - len(self.in_window)]
        return " ".join(w.text for w in before[-PROMPT_WORDS:])

    def window_moved(self, window_start_s: float) -> None:
        """Audio before `window_start_s` left the window: its words no longer appear."""
        self.in_window = [
            w for w in self.in_window if w.stop_s > window_start_s + OVERLAP_TOLERANCE_S
        ]
        if not self.in_window:
            self.pending = [w for w in self.pending if w.start_s >= window_start_s]

    def window_text(self) -> tuple[str, float]:
        """The committed words still in the window, and where the last one ends (stream s):
        the decoder is given them as a forced prefix, so its transcript holds only new words."""
        if not self.in_window:
            return "", 0.0
        return " ".join(w.text for w in self.in_window), self.in_window[-1].stop_s

    def _fresh(self, hypothesis: list[TimedWord]) -> list[TimedWord]:
        """The hypothesis's words (punctuation alone is none)."""
        return [w for w in hypothesis if _key(w.text)]

    def _end_last_word(self, hypothesis: list[TimedWord]) -> None:
        """Punctuation before a hypothesis's first word ends the last committed word's
        sentence: it joins that word's text (never sent again) in the next forced prefix,
        or the decoder adds it again and may stop there, before the next sentence."""
        if not (hypothesis and self.in_window) or _key(hypothesis[0].text):
            return
        last = self.in_window[-1]
        if last.text.endswith(hypothesis[0].text):
            return
        ended = replace(last, text=last.text + hypothesis[0].text)
        self.in_window[-1] = ended
        if self.committed and self.committed[-1] is last:
            self.committed[-1] = ended

    def _commit(self, words: list[TimedWord]) -> list[TimedWord]:
        out = []
        for w in words:
            # Keep stream times monotonic even when alignment jitters backwards.
            start = max(w.start_s, self.committed_end_s)
            end = max(w.stop_s, start)
            word = TimedWord(w.text, start, end, w.probability)
            out.append(word)
            self.committed.append(word)
            self.in_window.append(word)
            self.committed_end_s = end
        excess = len(self.committed) - len(self.in_window) - PROMPT_WORDS
        if excess > 0:
            del self.committed[:excess]
        return out

    def _sure(self, fresh: list[TimedWord], i: int, audio_end_s: float) -> bool:
        """Whether one decode may commit `fresh[i]`: the decoder is sure of it, and of the
        word after it or of enough audio after it."""
        word = fresh[i]
        # Punctuation after a word depends on what follows it ("been made, Amy"), and a
        # committed word is the next decode's forced prefix: "made," turned "amiable himself"
        # into "am you, or himself?".
        if word.probability < self.confident_p or not word.text[-1:].isalnum():
            return False
        # A next word the decoder is as sure of shows the audio after this one was heard well:
        # a shorter margin will do.
        followed = i + 1 < len(fresh) and fresh[i + 1].probability >= self.confident_p
        margin_s = self.followed_margin_s if followed else self.confident_margin_s
        return word.stop_s <= audio_end_s - margin_s

    def update(
        self, hypothesis: list[TimedWord], audio_end_s: float = float("inf")
    ) -> list[TimedWord]:
        """Commits the longest prefix this hypothesis shares with the previous one, and after
        it the words the decoder is at least `confident_p` sure of that end
        `confident_margin_s` before the decoded audio's end (`audio_end_s`) and carry no
        punctuation. An empty hypothesis is no news, not a contradiction: the decoder calls a
        short window it is unsure of silence, and forgetting the last hypothesis then cost
        every word after it a whole decode cycle (measured: 0.4-1 s more latency on a read
        sentence)."""
        self._end_last_word(hypothesis)
        fresh = self._fresh(hypothesis)
        if not fresh:
            return []
        agreed = 0
        for new, old in zip(fresh, self.pending, strict=False):
            if _key(new.text) != _key(old.text):
                break
            agreed += 1
        # The last agreed word's punctuation, where the decodes differ on it, belongs to what
        # they do not agree on yet: the word goes out without it. ("made" then "made, Amy,"
        # committed "made," and the next decode, forced on from it, heard "amiable himself" as
        # "am you, or himself?". Holding the word back instead cost it a decode cycle.)
        if agreed:
            last = fresh[agreed - 1]
            ending = _ending(last.text)
            if ending != _ending(self.pending[agreed - 1].text):
                fresh[agreed - 1] = replace(last, text=last.text[: len(last.text) - len(ending)])
        while agreed < len(fresh) and self._sure(fresh, agreed, audio_end_s):
            agreed += 1
        self.pending = fresh[agreed:]
        return self._commit(fresh[:agreed])

    def finish(self, hypothesis: list[TimedWord]) -> list[TimedWord]:
        """Commits the whole hypothesis (end of utterance or flush)."""
        self._end_last_word(hypothesis)
        fresh = self._fresh(hypothesis)
        self.pending = []
        return self._commit(fresh)
