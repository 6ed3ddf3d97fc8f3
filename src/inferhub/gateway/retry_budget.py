"""RetryBudget: retries may add at most a fraction of the request rate, so a failing fleet is not hammered.

A token bucket: every request adds ``ratio`` tokens, and ``floor_per_second``
tokens arrive with time so that a quiet gateway can still fail over; a retry
spends one token. With no token left, the request fails with its last error.
"""

from __future__ import annotations

import time


class RetryBudget:
    def __init__(self, ratio: float = 0.2, floor_per_second: float = 5.0, capacity: float = 100.0,
                 clock=time.monotonic) -> None:  # fmt: skip
        self.ratio = ratio
        self.floor_per_second = floor_per_second
        self.capacity = capacity
        self._clock = clock
        self._tokens = capacity / 10
        self._last = clock()
        self.exhausted = 0

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.floor_per_second)
        self._last = now

    def on_request(self) -> None:
        self._tokens = min(self.capacity, self._tokens + self.ratio)

    def try_spend(self) -> bool:
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        self.exhausted += 1
        return False
