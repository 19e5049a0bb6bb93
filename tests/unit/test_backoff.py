"""The shared capped backoff: growth, cap, jitter, and an immediate first retry when asked."""

from __future__ import annotations

import random

from gateway.backoff import Backoff


def test_grows_to_the_cap_with_jitter_in_the_upper_half() -> None:
    b = Backoff(initial_s=1.0, cap_s=4.0, rng=random.Random(1))
    delays = [b.next() for _ in range(6)]
    for d, ceiling in zip(delays, (1, 2, 4, 4, 4, 4), strict=True):
        assert ceiling / 2 <= d <= ceiling


def test_immediate_first_retries_at_once_after_every_reset() -> None:
    b = Backoff(initial_s=1.0, cap_s=2.0, rng=random.Random(1), immediate_first=True)
    assert b.next() == 0.0
    assert 0.5 <= b.next() <= 1.0
    assert 1.0 <= b.next() <= 2.0
    assert 1.0 <= b.next() <= 2.0
    b.reset()
    assert b.next() == 0.0
