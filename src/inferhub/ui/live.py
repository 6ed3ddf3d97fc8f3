"""A short in-memory time series of the gateway's live numbers, sampled from the Metrics registry.

Only requests to the endpoints that run a model count (``MODEL_ENDPOINTS``). Sampling is lazy: the
overview page polls ``/ui/api/live`` every few seconds and a new point is taken when the last one is
older than ``interval`` seconds. Rates are deltas between two samples. Latency and time-to-first-token
percentiles come from the histograms' buckets: the bucket counts added over the trailing ``window``
(the newest sample against the latest one at least ``window`` seconds older), interpolated within a
bucket the way Prometheus' ``histogram_quantile`` does.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

QUANTILES = (50, 95, 99)

# The endpoints that run a model (route templates, as HttpMetrics labels them). Listing models, polling jobs
# or managing collections are fast bookkeeping calls that would swamp the rates and percentiles.
MODEL_ENDPOINTS = frozenset({
    "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/rag/query", "/generate",
    "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/ui/playground/chat",
})  # fmt: skip


def _inference(endpoint: str) -> bool:
    return endpoint in MODEL_ENDPOINTS


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The ``q`` quantile (0..1) of a histogram given as cumulative counts by upper bound (``inf`` last).

    Linear interpolation inside the bucket that holds the rank; a rank in the ``+Inf`` bucket answers the
    highest finite bound. ``None`` when the histogram is empty.
    """
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank and count > below:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def _minus(now: dict[float, float], then: dict[float, float]) -> dict[float, float]:
    return {bound: count - then.get(bound, 0.0) for bound, count in now.items()}


@dataclass(slots=True)
class _Totals:
    at: float
    requests: float = 0.0
    errors: float = 0.0
    tokens: float = 0.0
    duration: dict[float, float] = field(default_factory=dict)  # cumulative bucket counts, summed over labels
    ttft: dict[float, float] = field(default_factory=dict)


def _add_buckets(into: dict[float, float], samples: Iterable[Any], keep=lambda labels: True) -> None:
    for sample in samples:
        if sample.name.endswith("_bucket") and keep(sample.labels):
            bound = float(sample.labels["le"])
            into[bound] = into.get(bound, 0.0) + sample.value


def _read(metrics: Any, at: float) -> _Totals:
    totals = _Totals(at)
    if metrics is None:
        return totals
    for family in metrics.requests.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and _inference(sample.labels.get("endpoint", "")):
                totals.requests += sample.value
                if not sample.labels.get("status", "200").startswith("2"):
                    totals.errors += sample.value
    for family in metrics.request_duration.collect():
        _add_buckets(totals.duration, family.samples, lambda labels: _inference(labels.get("endpoint", "")))
    for family in metrics.time_to_first_token.collect():
        _add_buckets(totals.ttft, family.samples)
    for family in metrics.tokens_generated.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                totals.tokens += sample.value
    return totals


def _percentiles(name: str, buckets: dict[float, float]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for q in QUANTILES:
        value = histogram_quantile(q / 100, buckets)
        out[f"{name}_p{q}_ms"] = round(1000 * value, 1) if value is not None else None
    return out


@dataclass
class LiveSeries:
    interval: float = 3.0
    window: float = 60.0
    points: deque = field(default_factory=lambda: deque(maxlen=120))
    _last: _Totals | None = None
    clock: Callable[[], float] = time.monotonic
    _history: deque = field(default_factory=deque)  # samples back to the latest one at least ``window`` old

    def sample(self, metrics: Any, queue_depth: int) -> None:
        now = _read(metrics, self.clock())
        last = self._last
        if last is not None and now.at - last.at < self.interval:
            return
        self._last = now
        self._history.append(now)
        while len(self._history) > 2 and now.at - self._history[1].at >= self.window:
            self._history.popleft()
        if last is None:
            return
        base = self._history[0]
        seconds = max(now.at - last.at, 1e-6)
        requests = now.requests - last.requests
        self.points.append({
            "t": time.strftime("%H:%M:%S"),
            "rps": round(requests / seconds, 3),
            "error_rate": round((now.errors - last.errors) / requests, 4) if requests else 0.0,
            **_percentiles("latency", _minus(now.duration, base.duration)),
            **_percentiles("ttft", _minus(now.ttft, base.ttft)),
            "tokens_per_s": round((now.tokens - last.tokens) / seconds, 2),
            "queue_depth": queue_depth,
        })  # fmt: skip

    def public(self) -> list[dict[str, Any]]:
        return list(self.points)
