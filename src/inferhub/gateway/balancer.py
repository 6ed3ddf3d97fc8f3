"""Balancer: orders the usable backends of a model by the model's strategy.

The first backend of the order is tried first; the rest are the failover order.

- ``least-busy``: fewest requests in flight (ties: lowest recent latency, then id).
- ``round-robin``: smooth weighted round robin (nginx's algorithm), by ``weight``.
- ``priority``: lowest ``priority`` value first ("prefer MLX, fall back to Ollama").
- ``latency``: lowest recent latency (EWMA); a backend never measured goes first, to be measured.
- ``session-affinity``: rendezvous hashing on the request's ``user`` (or ``X-Session-ID``), so the
  same conversation keeps landing on the same backend while it is usable; least-busy without a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from inferhub.backends.base import Backend
from inferhub.gateway.backend_state import BackendState

StateOf = Callable[[Backend], BackendState]


def order_backends(
    strategy: str, backends: Sequence[Backend], state_of: StateOf, affinity_key: str | None = None
) -> list[Backend]:
    if len(backends) <= 1:
        return list(backends)
    if strategy == "priority":
        return sorted(backends, key=lambda b: (b.priority, b.id))
    if strategy == "latency":
        return sorted(backends, key=lambda b: (_latency(state_of(b)), state_of(b).load, b.id))
    if strategy == "round-robin":
        return _smooth_weighted(backends, state_of)
    if strategy == "session-affinity" and affinity_key:
        return sorted(backends, key=lambda b: _rendezvous(affinity_key, b.id), reverse=True)
    return sorted(backends, key=lambda b: (state_of(b).load, _latency(state_of(b)), b.id))


def _latency(state: BackendState) -> float:
    return -1.0 if state.latency_ewma_ms is None else state.latency_ewma_ms


def _rendezvous(key: str, backend_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{key}\x00{backend_id}".encode(), digest_size=8).digest(), "big")


def _smooth_weighted(backends: Sequence[Backend], state_of: StateOf) -> list[Backend]:
    """One step of smooth weighted round robin picks the head; the rest follow by current weight."""
    total = 0
    best: Backend | None = None
    for backend in backends:
        state = state_of(backend)
        state.rr_current += backend.weight
        total += backend.weight
        if best is None or state.rr_current > state_of(best).rr_current:
            best = backend
    assert best is not None
    state_of(best).rr_current -= total
    rest = sorted((b for b in backends if b is not best), key=lambda b: -state_of(b).rr_current)
    return [best, *rest]
