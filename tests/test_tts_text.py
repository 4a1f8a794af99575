"""Phrase building from words and token pieces; word-to-phoneme-group alignment."""

from __future__ import annotations

from parley.backends.tts.piper_voice import assign_words
from parley.backends.tts.text import MAX_WORD_CHARS, Phrase, PhraseBuffer, normalize_word


def feed_words(buf: PhraseBuffer, text: str) -> list[Phrase]:
    out = []
    for w in text.split():
        buf.add(w, whole_words=True)
        out += buf.take_ready()
    return out


def test_phrases_end_at_sentence_and_pause_punctuation() -> None:
    buf = PhraseBuffer(min_pause_words=1)
    got = feed_words(buf, "Hello there, my friend. How are you? Fine; thanks: bye")
    assert [p.words for p in got] == [
        ["Hello", "there,"],
        ["my", "friend."],
        ["How", "are", "you?"],
        ["Fine;"],
        ["thanks"],  # ':' is a pause, and is spoken as a space
    ]
    assert buf.has_pending
    buf.flush()
    assert [p.words for p in buf.take_ready()] == [["bye"]]


def test_a_pause_needs_a_few_words_a_sentence_end_does_not() -> None:
    buf = PhraseBuffer()  # min_pause_words = 3
    got = feed_words(buf, "Well, that was fast. Yes. Then, after lunch, we left")
    assert [p.words for p in got] == [
        ["Well,", "that", "was", "fast."],
        ["Yes."],
        ["Then,", "after", "lunch,"],
    ]


def test_a_sentence_already_received_is_one_phrase_however_long() -> None:
    buf = PhraseBuffer(first_phrase_words=3, max_phrase_words=20)
    got = feed_words(buf, "one two three four five six seven eight nine ten.")
    assert [len(p.words) for p in got] == [10]
    assert not buf.release_first_phrase()  # the first phrase is out already


def test_the_first_phrase_is_cut_early_only_when_the_backend_says_so() -> None:
    buf = PhraseBuffer(first_phrase_words=3, max_phrase_words=20)
    assert feed_words(buf, "one two") == []
    assert not buf.release_first_phrase()  # fewer than first_phrase_words: keep waiting
    assert feed_words(buf, "three four") == []
    assert buf.release_first_phrase()  # its sentence end is too long in coming
    assert [p.words for p in buf.take_ready()] == [["one", "two", "three", "four"]]
    feed_words(buf, "five six seven")
    assert not buf.release_first_phrase()  # later phrases wait for their punctuation


def test_a_long_unpunctuated_burst_still_starts_with_a_short_phrase() -> None:
    buf = PhraseBuffer(first_phrase_words=3, max_phrase_words=5)
    got = feed_words(buf, "one two three four five six seven eight nine ten eleven")
    # At the cap the first phrase is cut at first_phrase_words; later ones at the cap.
    assert [p.words for p in got] == [
        ["one", "two", "three"],
        ["four", "five", "six", "seven", "eight"],
    ]
    assert buf.pending_words == 3


def test_cuts_without_punctuation_leave_connectives_for_the_next_phrase() -> None:
    buf = PhraseBuffer(first_phrase_words=4, max_phrase_words=4)
    got = feed_words(buf, "move them to the glass if the weather stays")
    assert [p.words for p in got] == [
        ["move", "them"],
        ["to", "the", "glass"],
        ["if", "the", "weather", "stays"],
    ]
    feed_words(buf, "cloudy and")
    assert buf.release_words()  # a listener is about to run out of audio
    assert [p.words for p in buf.take_ready()] == [["cloudy"]]
    assert buf.pending_words == 1  # "and" waits for what follows it
    buf.flush()
    assert [p.words for p in buf.take_ready()] == [["and"]]
    # Punctuation still ends a phrase where it is; a phrase of connectives alone is released.
    got = feed_words(PhraseBuffer(first_phrase_words=3, max_phrase_words=3), "Stay if. And the of")
    assert [p.words for p in got] == [["Stay", "if."], ["And", "the", "of"]]


def test_character_limit() -> None:
    buf = PhraseBuffer(first_phrase_words=100, max_phrase_words=100, max_phrase_chars=50)
    got = feed_words(buf, "abcdefghij " * 10)
    assert got and len(got[0].text) >= 50 and len(got[0].text) < 62


def test_token_pieces_join_into_words() -> None:
    buf = PhraseBuffer()
    out = []
    for t in ["Hel", "lo", " wor", "ld", "!", " How", " are", " you", "?", " fine"]:
        buf.add(t)
        out += buf.take_ready()
    assert [p.words for p in out] == [["Hello", "world!"], ["How", "are", "you?"]]
    buf.flush()
    assert [p.words for p in buf.take_ready()] == [["fine"]]


def test_break_tag_split_across_messages_becomes_silence() -> None:
    buf = PhraseBuffer()
    got = feed_words(buf, 'Wait for it <break time="0.5s"/> now <break time="250ms"/>')
    assert got == [Phrase(["Wait", "for", "it"], 0.5), Phrase(["now"], 0.25)]


def test_lone_angle_bracket_is_text() -> None:
    buf = PhraseBuffer()
    feed_words(buf, "a <b c")
    buf.flush()
    assert [p.words for p in buf.take_ready()] == [["a", "<b", "c"]]


def test_cjk_punctuation_splits_phrases() -> None:
    buf = PhraseBuffer()
    buf.add("你好，世界。再见。")
    assert [p.words for p in buf.take_ready()] == [["你好，", "世界。"], ["再见。"]]


def test_normalisation() -> None:
    assert normalize_word("it’s") == ["it's"]
    assert normalize_word("(yes)") == ["yes"]
    assert normalize_word("–") == []
    assert normalize_word("10:30") == ["10", "30"]


def _groups(sizes: list[int]) -> list[list[tuple[int, int]]]:
    """Groups of phonemes, each phoneme 100 samples, groups separated by 50-sample spaces."""
    out, pos = [], 0
    for size in sizes:
        out.append([(pos + 100 * k, 100) for k in range(size)])
        pos += 100 * size + 50
    return out


def test_assign_words_one_group_each() -> None:
    spans = assign_words([3, 2, 4], _groups([3, 2, 4]), [1, 1, 1])
    assert spans == [(0, 300), (350, 550), (600, 1000)]


def test_assign_words_fused_and_expanded_words() -> None:
    # "paid 123 for the dog": 123 says three groups; "for the" is fused into one group.
    weights = [4, 20, 3, 2, 3]
    isolated = [1, 3, 1, 1, 1]
    spans = assign_words(weights, _groups([4, 6, 6, 8, 4, 3]), isolated)
    starts = [s for s, _ in spans]
    assert starts == sorted(starts)
    g = _groups([4, 6, 6, 8, 4, 3])
    assert spans[1] == (g[1][0][0], g[3][-1][0] + 100)  # 123 -> groups 1..3
    assert spans[2][0] == g[4][0][0] and spans[3][1] == g[4][-1][0] + 100  # split of group 4
    assert spans[2][1] <= spans[3][0]
    assert spans[4] == (g[5][0][0], g[5][-1][0] + 100)


def test_assign_words_silent_word_is_a_point() -> None:
    spans = assign_words([2, 0, 2], _groups([2, 2]), [1, 0, 1])
    assert spans[1][0] == spans[1][1]
    assert spans[0] == (0, 200) and spans[2] == (250, 450)


def test_a_run_without_spaces_is_cut_into_bounded_words_as_it_arrives() -> None:
    """One-letter tokens with no space (an attack, or pasted data): what waits unparsed stays
    bounded (parsing stays linear), and no word or phrase grows past its limit (a 4,000-letter
    word took Piper to 1.9 GB)."""
    buf = PhraseBuffer()
    for _ in range(10_000):
        buf.add("x")
        assert len(buf._raw) <= MAX_WORD_CHARS
    buf.flush()
    phrases = buf.take_ready()
    words = [w for p in phrases for w in p.words]
    assert "".join(words) == "x" * 10_000
    assert max(len(w) for w in words) == MAX_WORD_CHARS
    assert max(len(p.text) for p in phrases) <= buf.max_phrase_chars + MAX_WORD_CHARS


def test_a_long_message_with_many_words_parses_whole() -> None:
    buf = PhraseBuffer()
    buf.add("word " * 20_000, whole_words=True)
    buf.flush()
    assert sum(len(p.words) for p in buf.take_ready()) == 20_000
