"""LocalAgreement-2: words go out once, after two decodes agree, in time order."""

from __future__ import annotations

from parley.backends.stt.commit import LocalAgreement, TimedWord


def words(text: str, start: float = 0.0, step: float = 0.4) -> list[TimedWord]:
    return [
        TimedWord(w, start + i * step, start + (i + 1) * step) for i, w in enumerate(text.split())
    ]


def test_commits_only_what_two_decodes_agree_on() -> None:
    p = LocalAgreement()
    assert p.update(words("so my fellow")) == []
    got = p.update(words("so my fellow Americans ask"))
    assert [w.text for w in got] == ["so", "my", "fellow"]
    # The committed words are now the decoder's prefix: hypotheses hold only what follows.
    assert p.window_text()[0] == "so my fellow"
    got = p.update(words("Americans, ask not", start=1.2))
    assert [w.text for w in got] == ["Americans,", "ask"]


def test_disagreement_commits_nothing_past_it() -> None:
    p = LocalAgreement()
    p.update(words("ask not what you are"))
    assert [w.text for w in p.update(words("ask not what your country"))] == ["ask", "not", "what"]


def test_an_empty_decode_between_two_that_agree_does_not_reset_agreement() -> None:
    """The decoder returns nothing for a short window it is unsure of: the hypothesis before
    it still counts, so the next decode that agrees with it commits."""
    p = LocalAgreement()
    p.update(words("be considered"))
    assert p.update([]) == []
    assert [w.text for w in p.update(words("be considered as"))] == ["be", "considered"]


def test_finish_commits_the_rest_once() -> None:
    p = LocalAgreement()
    p.update(words("the earliest book"))
    p.update(words("the earliest book printed"))
    final = p.finish(words("printed with movable types", start=1.2))
    assert [w.text for w in final] == ["printed", "with", "movable", "types"]
    assert p.pending == []
    assert p.window_text()[0] == "the earliest book printed with movable types"


def test_punctuation_only_words_are_not_committed() -> None:
    p = LocalAgreement()
    got = p.finish([TimedWord("...", 0.0, 0.1), TimedWord("yes.", 0.1, 0.5)])
    assert [w.text for w in got] == ["yes."]


def test_times_never_go_backwards() -> None:
    p = LocalAgreement()
    p.finish([TimedWord("a", 0.0, 1.0), TimedWord("b", 0.9, 0.95)])
    starts = [w.start_s for w in p.committed]
    ends = [w.stop_s for w in p.committed]
    assert starts == sorted(starts) and all(e >= s for s, e in zip(starts, ends, strict=True))


def test_prompt_excludes_words_still_in_the_window() -> None:
    p = LocalAgreement()
    p.finish(words("first sentence here."))
    p.window_moved(1.2)
    p.update(words("second part", start=2.0))
    p.finish(words("second part", start=2.0))
    assert p.prompt() == "first sentence here."
    p.window_moved(3.0)
    assert p.prompt() == "first sentence here. second part"


def test_a_sure_word_with_audio_after_it_needs_no_second_decode() -> None:
    """With `confident_p` set, a first decode commits its leading words that are that sure and
    end `confident_margin_s` before the decoded audio's end; the first word short of either
    stops it. By default every word waits for agreement."""
    hypothesis = [
        TimedWord("ask", 0.0, 0.4, 0.95),
        TimedWord("not", 0.4, 0.8, 0.5),  # unsure: it and all after it wait
        TimedWord("what", 0.8, 1.2, 0.99),
    ]
    p = LocalAgreement(confident_p=0.9, confident_margin_s=0.5)
    assert [w.text for w in p.update(hypothesis, audio_end_s=2.0)] == ["ask"]
    assert [w.text for w in p.pending] == ["not", "what"]
    near_the_end = LocalAgreement(confident_p=0.9, confident_margin_s=0.5)
    assert near_the_end.update(hypothesis[:1], audio_end_s=0.8) == []
    assert LocalAgreement().update(hypothesis, audio_end_s=10.0) == []


def test_a_punctuated_word_waits_for_agreement() -> None:
    """Punctuation depends on the words after it, and a committed word becomes the next
    decode's forced prefix: a word ending in punctuation is not committed on one decode."""
    p = LocalAgreement(confident_p=0.5, confident_margin_s=0.2)
    hypothesis = [TimedWord("made,", 0.0, 0.4, 0.99), TimedWord("amiable", 0.4, 0.9, 0.99)]
    assert p.update(hypothesis, audio_end_s=3.0) == []


def test_a_word_followed_by_a_sure_one_needs_less_audio_after_it() -> None:
    """A sure word whose next word the decoder is as sure of is committed
    `followed_margin_s` before the audio's end; one whose next word is unsure, or not heard
    yet, keeps the full `confident_margin_s`."""
    followed = [TimedWord("ask", 0.0, 0.4, 0.95), TimedWord("not", 0.4, 0.7, 0.95)]
    p = LocalAgreement(confident_p=0.9, confident_margin_s=0.5, followed_margin_s=0.2)
    assert [w.text for w in p.update(followed, audio_end_s=0.7)] == ["ask"]
    unsure_next = [TimedWord("ask", 0.0, 0.4, 0.95), TimedWord("not", 0.4, 0.7, 0.5)]
    q = LocalAgreement(confident_p=0.9, confident_margin_s=0.5, followed_margin_s=0.2)
    assert q.update(unsure_next, audio_end_s=0.7) == []
    r = LocalAgreement(confident_p=0.9, confident_margin_s=0.5, followed_margin_s=0.2)
    assert r.update(followed[:1], audio_end_s=0.7) == []


def test_agreed_words_that_differ_in_punctuation_go_out_without_it() -> None:
    """Two decodes agree on "made" but only the second puts a comma after it ("made, Amy,"):
    the comma depends on the next word, which they do not agree on, so "made" is committed
    without it; with the next word agreed too, the newer punctuation is committed."""
    p = LocalAgreement()
    p.update(words("have been made"))
    got = p.update(words("have been made, Amy,"))
    assert [w.text for w in got] == ["have", "been", "made"]
    assert p.window_text()[0] == "have been made"
    p.update(words("amiable, himself", start=1.2))
    got = p.update(words("amiable himself.", start=1.2))
    assert [w.text for w in got] == ["amiable", "himself"]
    p = LocalAgreement()
    p.update(words("so my, fellow"))
    assert [w.text for w in p.update(words("so my fellow Americans"))] == ["so", "my", "fellow"]


def test_punctuation_after_the_prefix_ends_the_committed_word() -> None:
    """A decode that starts with "." after the committed "surpassed": the next forced prefix
    is "... surpassed." (without it the decoder adds "." again and stops before the next
    sentence); the "." itself is never sent, and the prompt once the word leaves the window
    has it too."""
    p = LocalAgreement()
    p.finish(words("has never been surpassed"))
    assert p.update([TimedWord(".", 1.6, 1.6), *words("And Mr.", start=2.5)]) == []
    assert p.window_text()[0] == "has never been surpassed."
    p.update([TimedWord(".", 1.6, 1.6), *words("And Mr.", start=2.5)])
    assert p.window_text()[0] == "has never been surpassed. And Mr."
    p.window_moved(2.0)
    assert p.prompt() == "has never been surpassed."
