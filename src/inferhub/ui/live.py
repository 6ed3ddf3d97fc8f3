"""A short in-memory time series of the gateway's live numbers, sampled from the Metrics registry.

Sampling is lazy: the overview page polls ``/ui/api/live`` every few seconds and a new point is
taken when the last one is older than ``interval`` seconds. Rates are deltas between two samples.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

_INFERENCE_PREFIXES = ("/v1/", "/generate", "/ui/playground/chat")
_OLLAMA = frozenset({"/api/chat", "/api/generate", "/api/embed", "/api/embeddings"})


def _inference(endpoint: str) -> bool:
    return endpoint.startswith(_INFERENCE_PREFIXES) or endpoint in _OLLAMA


@dataclass(slots=True)
class _Totals:
    at: float
    requests: float = 0.0
    errors: float = 0.0
    duration_sum: float = 0.0
    duration_count: float = 0.0
    ttft_sum: float = 0.0
    ttft_count: float = 0.0
    tokens: float = 0.0


def _read(metrics: Any) -> _Totals:
    totals = _Totals(time.monotonic())
    if metrics is None:
        return totals
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and _inference(sample.labels.get("endpoint", "")):
                totals.requests += sample.value
                if not sample.labels.get("status", "200").startswith("2"):
                    totals.errors += sample.value
    for family in metrics.request_duration.collect():
        for sample in family.samples:
            if not _inference(sample.labels.get("endpoint", "")):
                continue
            if sample.name.endswith("_sum"):
                totals.duration_sum += sample.value
            elif sample.name.endswith("_count"):
                totals.duration_count += sample.value
    for family in metrics.time_to_first_token.collect():
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                totals.ttft_sum += sample.value
            elif sample.name.endswith("_count"):
                totals.ttft_count += sample.value
    for family in metrics.tokens_generated.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals.tokens += sample.value
    return totals


@dataclass
class LiveSeries:
    interval: float = 3.0
    points: deque = field(default_factory=lambda: deque(maxlen=120))
    _last: _Totals | None = None

    def sample(self, metrics: Any, queue_depth: int) -> None:
        now = _read(metrics)
        last = self._last
        if last is not None and now.at - last.at < self.interval:
            return
        self._last = now
        if last is None:
            return
        seconds = max(now.at - last.at, 1e-6)
        requests = now.requests - last.requests
        durations = now.duration_count - last.duration_count
        ttfts = now.ttft_count - last.ttft_count
        self.points.append({
            "t": time.strftime("%H:%M:%S"),
            "rps": round(requests / seconds, 3),
            "error_rate": round((now.errors - last.errors) / requests, 4) if requests else 0.0,
            "latency_ms": round(1000 * (now.duration_sum - last.duration_sum) / durations, 1) if durations else None,
            "ttft_ms": round(1000 * (now.ttft_sum - last.ttft_sum) / ttfts, 1) if ttfts else None,
            "tokens_per_s": round((now.tokens - last.tokens) / seconds, 2),
            "queue_depth": queue_depth,
        })  # fmt: skip

    def public(self) -> list[dict[str, Any]]:
        return list(self.points)
