"""`parley bench stt --clip-ids`: the eval clips a bench run plays, chosen by id."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

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


def test_unknown_clip_id_is_a_clear_error_before_any_connection() -> None:
    with pytest.raises(SystemExit, match="no_such_clip"):
        pick_clips(english_clips(EVAL_DIR), "fasterwhisper_jfk,no_such_clip")
    # Through the real command line: nothing listens on port 9, so only the id check can
    # end the run with this message.
    run = subprocess.run(
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
            "--clip-ids",
            "no_such_clip",
            "--no-baseline",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "--clip-ids: no English clip of at most 30 s named no_such_clip" in run.stderr
