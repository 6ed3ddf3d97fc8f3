"""BackendState: what this process knows about one backend right now (load, latency, health, circuit).

Kept per process, keyed by backend id, and carried across registry reloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from inferhub.gateway.circuit_breaker import CircuitBreaker


@dataclass(slots=True)
class BackendState:
    breaker: CircuitBreaker
    max_concurrency: int
    in_flight: int = 0
    healthy: bool = True  # from active checks; assumed healthy until a check says otherwise
    last_check_error: str | None = None
    latency_ewma_ms: float | None = None
    engine_running: int | None = None  # vLLM /metrics: requests running on the engine
    engine_waiting: int | None = None  # vLLM /metrics: requests waiting on the engine
    discovered_models: tuple[str, ...] = ()
    rr_current: float = 0.0  # smooth weighted round robin
    extra: dict[str, object] = field(default_factory=dict)

    def observe_latency(self, milliseconds: float, alpha: float = 0.3) -> None:
        previous = self.latency_ewma_ms
        self.latency_ewma_ms = milliseconds if previous is None else alpha * milliseconds + (1 - alpha) * previous

    @property
    def load(self) -> int:
        """Requests in flight, or the engine's own count when it reports more (other replicas' work)."""
        engine = (self.engine_running or 0) + (self.engine_waiting or 0)
        return max(self.in_flight, engine)

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.max_concurrency or ((self.engine_waiting or 0) > 0 and self.in_flight > 0)

    def public(self) -> dict[str, object]:
        return {
            "healthy": self.healthy,
            "circuit": self.breaker.state.value,
            "consecutive_failures": self.breaker.consecutive_failures,
            "in_flight": self.in_flight,
            "max_concurrency": self.max_concurrency,
            "latency_ewma_ms": round(self.latency_ewma_ms, 2) if self.latency_ewma_ms is not None else None,
            "engine_running": self.engine_running,
            "engine_waiting": self.engine_waiting,
            "last_check_error": self.last_check_error,
        }
