"""The overview's live series: rates between samples and percentiles from the histogram buckets."""

from __future__ import annotations

import math

import pytest

from inferhub.observability.metrics import Metrics
from inferhub.ui.live import LiveSeries, histogram_quantile


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_quantile_interpolates_inside_the_bucket() -> None:
    # 10 observations at or under 0.1 s, 10 more between 0.1 s and 0.5 s.
    buckets = {0.1: 10.0, 0.5: 20.0, 1.0: 20.0, math.inf: 20.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.3)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.1 + 0.4 * 9.8 / 10)


def test_quantile_of_an_empty_histogram_or_in_the_inf_bucket() -> None:
    assert histogram_quantile(0.5, {}) is None
    assert histogram_quantile(0.5, {0.1: 0.0, math.inf: 0.0}) is None
    # Everything slower than the largest bound: the best answer is that bound.
    assert histogram_quantile(0.95, {0.1: 0.0, 1.0: 0.0, math.inf: 4.0}) == 1.0


def test_series_reports_percentiles_over_the_window_not_since_start() -> None:
    metrics, clock = Metrics(), Clock()
    series = LiveSeries(interval=3.0, window=60.0, clock=clock)
    for _ in range(50):  # old, slow traffic: falls out of the window
        metrics.request_duration.labels("/v1/chat/completions").observe(20.0)
    series.sample(metrics, queue_depth=0)
    clock.now += 3
    series.sample(metrics, queue_depth=0)
    assert series.public()[-1]["latency_p50_ms"] is None  # nothing new since the first sample
    for _ in range(90):
        metrics.request_duration.labels("/v1/chat/completions").observe(0.04)  # in (0.025, 0.05]
    for _ in range(10):
        metrics.request_duration.labels("/v1/chat/completions").observe(0.4)  # in (0.25, 0.5]
    metrics.request_duration.labels("/metrics").observe(100.0)  # not a model endpoint: ignored
    for _ in range(500):
        metrics.request_duration.labels("/v1/models").observe(0.001)  # bookkeeping: would drag p50 down
    metrics.time_to_first_token.labels("smollm2", "local").observe(0.2)
    clock.now += 3
    series.sample(metrics, queue_depth=2)
    point = series.public()[-1]
    assert point["rps"] == pytest.approx(0.0)  # the counters were not touched, only the histograms
    assert 25 < point["latency_p50_ms"] <= 50
    assert 250 < point["latency_p95_ms"] <= 500
    assert point["latency_p95_ms"] <= point["latency_p99_ms"] <= 500
    assert 100 < point["ttft_p50_ms"] <= 250
    assert point["queue_depth"] == 2
    # A minute later with no traffic, the window has moved past those requests.
    for _ in range(25):
        clock.now += 3
        series.sample(metrics, queue_depth=0)
    assert series.public()[-1]["latency_p99_ms"] is None


def test_series_counts_requests_and_errors_between_samples() -> None:
    metrics, clock = Metrics(), Clock()
    series = LiveSeries(interval=3.0, clock=clock)
    series.sample(metrics, queue_depth=0)
    metrics.requests.labels("/v1/chat/completions", "200").inc(5)
    metrics.requests.labels("/v1/chat/completions", "503").inc(1)
    metrics.requests.labels("/health", "200").inc(100)
    metrics.requests.labels("/v1/models", "200").inc(100)
    clock.now += 1
    series.sample(metrics, queue_depth=0)  # too soon: no new point
    assert series.public() == []
    clock.now += 2
    series.sample(metrics, queue_depth=0)
    point = series.public()[-1]
    assert point["rps"] == pytest.approx(2.0)
    assert point["error_rate"] == pytest.approx(1 / 6, abs=1e-4)


def test_the_playground_is_labelled_as_a_model_endpoint() -> None:
    """HttpMetrics labels a request with its route's path: the UI's routes must carry the full ``/ui/...``."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from inferhub.observability.http_metrics import HttpMetrics
    from inferhub.ui.live import MODEL_ENDPOINTS
    from inferhub.ui.routes import router

    app, metrics = FastAPI(), Metrics()
    app.include_router(router)
    app.add_middleware(HttpMetrics, metrics=metrics)
    with TestClient(app) as client:
        assert client.post("/ui/playground/chat").status_code == 401  # no session: refused, but still counted
        client.get("/ui/backends", follow_redirects=False)
    labels = {s.labels["endpoint"] for f in metrics.requests.collect() for s in f.samples}
    assert labels == {"/ui/playground/chat", "/ui/backends"}
    assert "/ui/playground/chat" in MODEL_ENDPOINTS
