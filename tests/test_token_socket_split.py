"""The token socket's message size limit: a long phrase goes out in parts under 1 MiB (the
`websockets` default the seed's client keeps), cut in a pause, nothing lost."""

from __future__ import annotations

import numpy as np

from parley.protocol.token_socket import MAX_MESSAGE_BYTES, split_message


def test_long_phrase_split_in_a_pause() -> None:
    rate = 48_000
    rng = np.random.default_rng(0)
    pcm = (0.3 * rng.standard_normal(8 * rate)).astype(np.float32)  # 8 s of "speech"
    gap = slice(int(4.6 * rate), int(4.7 * rate))
    pcm[gap] = 0.0  # a pause inside the last quarter before the 5.46 s limit
    parts = split_message(pcm, rate)
    assert len(parts) == 2
    assert all(p.astype("<f4").nbytes <= MAX_MESSAGE_BYTES for p in parts)
    assert np.array_equal(np.concatenate(parts), pcm)
    assert gap.start <= len(parts[0]) <= gap.stop


def test_short_phrase_is_one_message() -> None:
    pcm = np.ones(48_000, np.float32)
    assert [len(p) for p in split_message(pcm, 48_000)] == [48_000]
