"""Deterministic train/test split of sessions, by a seeded hash of each session's identity."""

from __future__ import annotations

import hashlib


def is_test(seed: int, *identity: str, test_fraction: float = 0.25) -> bool:
    """Return whether a session (named by e.g. its source and id) falls in the test split.

    The answer depends only on the seed and the identity, so a session stays on its side
    of the split however the file is ordered or grows.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be between 0 and 1")
    digest = hashlib.sha256("\x1f".join((str(seed), *identity)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction
