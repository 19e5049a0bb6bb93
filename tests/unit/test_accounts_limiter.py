"""Failed-attempt limits on a stepped clock."""

from __future__ import annotations

import pytest

from gateway.accounts.limiter import FailureLimiter

NS = 1_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 1_000 * NS

    def __call__(self) -> int:
        return self.t

    def step(self, seconds: float) -> None:
        self.t += int(seconds * NS)


def test_a_key_waits_until_its_oldest_counted_failure_leaves_the_window() -> None:
    clock = Clock()
    limit = FailureLimiter(clock, max_failures=3, window_s=60)
    for _ in range(2):
        limit.failed("u")
        assert limit.retry_after_s("u") is None
        clock.step(10)
    limit.failed("u")  # failures at 0, 10, 20 s
    assert limit.retry_after_s("u") == 40
    assert limit.retry_after_s("other") is None
    clock.step(39.5)
    assert limit.retry_after_s("u") == 1  # rounded up: never "try again in 0 s"
    clock.step(0.5)
    assert limit.retry_after_s("u") is None  # the first failure left the window
    limit.failed("u")  # 10, 20, 60: waits until 10 s leaves
    assert limit.retry_after_s("u") == 10


def test_reset_forgets_a_key() -> None:
    clock = Clock()
    limit = FailureLimiter(clock, max_failures=1, window_s=60)
    limit.failed("u")
    assert limit.retry_after_s("u") == 60
    limit.reset("u")
    assert limit.retry_after_s("u") is None


def test_the_number_of_keys_is_bounded_dropping_the_longest_quiet_first() -> None:
    clock = Clock()
    limit = FailureLimiter(clock, max_failures=1, window_s=60, max_keys=3)
    for key in "abcd":
        limit.failed(key)
        clock.step(1)
    assert limit.retry_after_s("a") is None
    assert [limit.retry_after_s(k) is not None for k in "bcd"] == [True, True, True]


def test_at_least_one_failure_is_allowed() -> None:
    with pytest.raises(ValueError, match="max_failures"):
        FailureLimiter(Clock(), max_failures=0, window_s=1)
