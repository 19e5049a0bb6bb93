"""Capped exponential backoff with jitter, shared by every driver and sink."""

from __future__ import annotations

import random


class Backoff:
    def __init__(self, initial_s: float = 1.0, cap_s: float = 60.0, factor: float = 2.0,
                 rng: random.Random | None = None, *, immediate_first: bool = False) -> None:
        self.initial_s = initial_s
        self.cap_s = cap_s
        self.factor = factor
        self.immediate_first = immediate_first  # the first retry after a reset is at once (a blip costs nothing)
        self.attempt = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The next delay: grows by `factor` up to `cap_s`, then a random point in its upper half (jitter)."""
        step = self.attempt - (1 if self.immediate_first else 0)
        self.attempt += 1
        if step < 0:
            return 0.0
        ceiling = min(self.cap_s, self.initial_s * self.factor ** step)
        return ceiling * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self.attempt = 0
