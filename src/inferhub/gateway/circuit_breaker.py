"""CircuitBreaker: passive health from real traffic.

Closed → (N consecutive failures) → open → (cool-down) → half-open: one probe
request is let through; its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import time
from enum import StrEnum


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, failure_threshold: int = 3, cooldown_seconds: float = 10.0, clock=time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self.consecutive_failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at >= self.cooldown_seconds:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    def allows_request(self) -> bool:
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        return state is CircuitState.HALF_OPEN and not self._probe_in_flight

    def on_attempt(self) -> None:
        """Called when a request is sent; in half-open state it becomes the single probe."""
        if self.state is CircuitState.HALF_OPEN:
            self._probe_in_flight = True

    def on_success(self) -> None:
        self.consecutive_failures = 0
        self._opened_at = None
        self._probe_in_flight = False

    def on_failure(self) -> bool:
        """Record a failure; returns True if this failure opened (or re-opened) the circuit."""
        self.consecutive_failures += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or (self._opened_at is None and self.consecutive_failures >= self.failure_threshold):
            self._opened_at = self._clock()
            return True
        return False

    def reset(self) -> None:
        self.on_success()
