"""`parley bench stt --clip-ids`: the eval clips a bench run plays, chosen by id; and the
bench commands' other comma-separated options."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from parley.bench.comma_lists import comma_choices, comma_counts, comma_list
from parley.bench.eval_clips import english_clips, make_playlists, pick_clips
from tests.conftest import EVAL_DIR, ROOT


def test_clip_ids_pick_those_clips_in_that_order() -> None:
    clips = english_clips(EVAL_DIR)
    picked = pick_clips(clips, "mfa_acoustic_corpus, fasterwhisper_jfk,mfa_61-70968-0000")
    assert [c.id for c in picked] == [
        "mfa_acoustic_corpus",
        "fasterwhisper_jfk",
        "mfa_61-70968-0000",
    ]
    assert pick_clips(clips, "") == clips
    # Four streams of five clips over these three: the spontaneous monologue comes round on
    # every stream, so one run measures it several times over.
    silence = [np.zeros(10, np.float32)] * len(picked)
    for playlist in make_playlists(picked, silence, 4, 5):
        assert "mfa_acoustic_corpus" in playlist.clip_ids


def _bench_stt(*options: str) -> subprocess.CompletedProcess[str]:
    """The real command line. Nothing listens on port 9, so a run that gets past its options
    fails on the connection, not with an option's message."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "parley",
            "bench",
            "stt",
            "--url",
            "ws://127.0.0.1:9",
            "--eval-dir",
            str(EVAL_DIR),
            "--no-baseline",
            *options,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unknown_clip_id_is_a_clear_error_before_any_connection() -> None:
    with pytest.raises(SystemExit, match="no_such_clip"):
        pick_clips(english_clips(EVAL_DIR), "fasterwhisper_jfk,no_such_clip")
    run = _bench_stt("--clip-ids", "no_such_clip")
    assert run.returncode != 0
    assert "--clip-ids: no bench clip named no_such_clip" in run.stderr


def test_comma_options_read_blanks_as_nothing_and_refuse_bad_items() -> None:
    assert comma_list(" a, b,,c ,") == ["a", "b", "c"]
    assert comma_counts("1, 4,8", "--streams") == [1, 4, 8]
    assert comma_choices("fast, realtime", "--modes", ["realtime", "fast"]) == ["fast", "realtime"]
    for bad in ("", "0", "4,x", "-1"):
        with pytest.raises(SystemExit, match="--streams: give one or more counts"):
            comma_counts(bad, "--streams")
    for bad in ("", ",", "fast,slow"):
        with pytest.raises(SystemExit, match="--modes: choose from realtime, fast"):
            comma_choices(bad, "--modes", ["realtime", "fast"])
    # A stream count that is not a number was a ValueError traceback from the bench.
    run = _bench_stt("--streams", "4,x")
    assert run.returncode != 0
    assert "--streams: give one or more counts of at least 1" in run.stderr
    assert "Traceback" not in run.stderr
