"""The WER normaliser: formatting differences are not recognition errors; real ones still are."""

from __future__ import annotations

from parley.bench.wer import normalize, wer


def test_numbers_spellings_and_punctuation_are_not_errors() -> None:
    assert normalize("Mr. Grey opens at 9, room 120 - 45 minutes!") == (
        "mister gray opens at nine room one hundred twenty forty five minutes".split()
    )
    assert wer(["The library opens at nine."], ["the library opens at 9"]) == 0.0
    assert wer(["a gray cat"], ["A grey cat."]) == 0.0


def test_real_errors_still_count() -> None:
    assert wer(["the boats rocked gently"], ["the boats rock gently"]) == 0.25
    assert wer(["opens at nine"], ["opens at 5"]) == 1 / 3
    assert normalize("1990") == ["1990"]  # years and long numbers are left as written
