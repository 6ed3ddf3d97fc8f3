"""StatsRecorder: per-backend request outcomes, accumulated in memory and written in batches.

``record`` is a few additions on the request path; ``flush`` runs on an interval
in a worker thread and folds the batch into ``llm_backends``. Local (embedded)
backends have no row, so their totals live only here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from inferhub.fleet.records import StatsDelta

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class LiveStats:
    requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    tokens: int = 0
    generation_seconds: float = 0.0

    def public(self) -> dict[str, float | int]:
        return {
            "total_requests": self.requests,
            "total_errors": self.errors,
            "avg_latency_ms": round(self.latency_ms_sum / self.requests, 2) if self.requests else 0.0,
            "avg_tokens_per_sec": round(self.tokens / self.generation_seconds, 2)
            if self.generation_seconds
            else 0.0,
        }


class StatsRecorder:
    def __init__(self, write: Callable[[dict[int, StatsDelta]], None] | None) -> None:
        self._write = write
        self._pending: dict[int, StatsDelta] = {}
        self.live: dict[str, LiveStats] = {}

    def record(
        self, backend_id: str, *, ok: bool, latency_s: float, completion_tokens: int = 0
    ) -> None:
        live = self.live.get(backend_id)
        if live is None:
            live = self.live[backend_id] = LiveStats()
        live.requests += 1
        live.errors += 0 if ok else 1
        live.latency_ms_sum += latency_s * 1000
        if completion_tokens:
            live.tokens += completion_tokens
            live.generation_seconds += latency_s
        if not backend_id.isdigit():
            return
        delta = self._pending.get(int(backend_id))
        if delta is None:
            delta = self._pending[int(backend_id)] = StatsDelta()
        delta.requests += 1
        delta.errors += 0 if ok else 1
        delta.latency_ms_sum += latency_s * 1000
        if completion_tokens:
            delta.tokens += completion_tokens
            delta.generation_seconds += latency_s

    async def flush(self) -> None:
        if not self._pending or self._write is None:
            return
        batch, self._pending = self._pending, {}
        try:
            await asyncio.to_thread(self._write, batch)
        except Exception as exc:  # keep serving; stats are best effort
            log.warning("backend_stats_flush_failed", error=str(exc), backends=len(batch))

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
