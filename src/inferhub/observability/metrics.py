"""Prometheus metrics (prometheus-client): the names single-node setups already chart, plus the fleet's.

Counters and histograms are updated on the request path (a label lookup and an
add: about a microsecond). Gauges that describe state (backend up, in flight,
circuit, queue depth, CPU, memory) are computed when ``/metrics`` is scraped, by
``StateCollector``, so the request path never maintains them.

Multi-process mode: when ``PROMETHEUS_MULTIPROC_DIR`` is set (as ``--workers N``
does), counters and histograms are aggregated across the worker processes by
prometheus-client's ``MultiProcessCollector``, and so are the state gauges once
``share_gauges`` runs in every worker (``_shared_gauges.py``: summed, or the worst
worker's view, per gauge).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

import psutil
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inferhub.observability._shared_gauges import SharedGauges

disable_created_metrics()  # the *_created series double the output and no dashboard reads them

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
RATE_BUCKETS = (1, 5, 10, 20, 40, 60, 80, 100, 150, 200, 400, 800)
QUEUE_BUCKETS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

CIRCUIT_VALUES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    """Every metric Inferhub exports, on one registry. ``tenant_label=False`` drops tenant labels."""

    def __init__(self, *, tenant_label: bool = True, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.tenant_label = tenant_label
        self._collectors: list[Collector] = []
        self._shared: SharedGauges | None = None
        r = self.registry
        self.requests = Counter("llm_requests_total", "HTTP requests by endpoint and status code.",
                                ["endpoint", "status"], registry=r)  # fmt: skip
        self.request_duration = Histogram("llm_request_duration_seconds", "HTTP request duration, to the last byte.",
                                          ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.inference_duration = Histogram("llm_inference_duration_seconds", "Upstream inference time per request.",
                                            ["model", "backend"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.tokens_generated = Counter("llm_tokens_generated_total", "Completion tokens generated.",
                                        ["model", "backend"], registry=r)  # fmt: skip
        self.prompt_tokens = Counter("llm_prompt_tokens_total", "Prompt tokens processed.", ["model", "backend"],
                                     registry=r)  # fmt: skip
        self.time_to_first_token = Histogram("llm_time_to_first_token_seconds", "Time to the first streamed token.",
                                             ["model", "backend"], buckets=TTFT_BUCKETS, registry=r)  # fmt: skip
        self.output_tokens_per_second = Histogram("llm_output_tokens_per_second", "Generation speed per request.",
                                                  ["model", "backend"], buckets=RATE_BUCKETS, registry=r)  # fmt: skip
        self.upstream_errors = Counter("llm_backend_errors_total", "Failed upstream calls by backend and code.",
                                       ["model", "backend", "code"], registry=r)  # fmt: skip
        self.retries = Counter("llm_retries_total", "Requests retried on another backend.", ["model"], registry=r)
        self.fallbacks = Counter("llm_fallbacks_total", "Requests served by a fallback model.",
                                 ["model", "fallback_model"], registry=r)  # fmt: skip
        self.queue_wait = Histogram("llm_queue_wait_seconds", "Time spent waiting in the fair queue.", ["model"],
                                    buckets=QUEUE_BUCKETS, registry=r)  # fmt: skip
        self.queue_timeouts = Counter("llm_queue_timeouts_total", "Requests refused after waiting too long.",
                                      ["model"], registry=r)  # fmt: skip
        self.rate_limited = Counter("llm_rate_limited_total", "Requests refused by a rate limit.",
                                    ["limit", "scope"], registry=r)  # fmt: skip
        self.budget_refused = Counter("llm_budget_refused_total", "Requests refused by a budget.",
                                      ["budget", "scope"], registry=r)  # fmt: skip
        self.rag_ingest = Histogram("llm_rag_ingest_seconds", "Time to ingest one document (extract, chunk, embed, "
                                    "store).", buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.rag_chunks = Counter("llm_rag_chunks_ingested_total", "Chunks stored by ingestion.", registry=r)
        self.rag_query = Histogram("llm_rag_query_seconds", "Retrieval latency (embedding the query and searching).",
                                   ["mode"], buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        tenant = ["tenant"] if tenant_label else []
        self.usage_tokens = Counter("llm_usage_tokens_total", "Tokens metered for billing.",
                                    [*tenant, "model", "kind"], registry=r)  # fmt: skip
        self.usage_cost = Counter("llm_usage_cost_total", "Cost metered for billing, in the configured currency.",
                                  [*tenant, "model"], registry=r)  # fmt: skip

    # -- recording helpers used by the pipeline --------------------------------------------------------

    def observe_completion(self, model: str, backend: str, seconds: float, prompt: int, completion: int,
                           ttft: float | None = None) -> None:  # fmt: skip
        self.inference_duration.labels(model, backend).observe(seconds)
        if prompt:
            self.prompt_tokens.labels(model, backend).inc(prompt)
        if completion:
            self.tokens_generated.labels(model, backend).inc(completion)
            generation = seconds - (ttft or 0.0)
            if generation > 0:
                self.output_tokens_per_second.labels(model, backend).observe(completion / generation)
        if ttft is not None:
            self.time_to_first_token.labels(model, backend).observe(ttft)

    def observe_usage(self, tenant: str, model: str, prompt: int, completion: int, cost: float) -> None:
        labels = [tenant] if self.tenant_label else []
        if prompt:
            self.usage_tokens.labels(*labels, model, "prompt").inc(prompt)
        if completion:
            self.usage_tokens.labels(*labels, model, "completion").inc(completion)
        if cost:
            self.usage_cost.labels(*labels, model).inc(cost)

    def add_collector(self, collector: Collector) -> None:
        self._collectors.append(collector)
        self.registry.register(collector)

    @property
    def multiprocess(self) -> bool:
        return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

    def share_gauges(self) -> SharedGauges:
        """Multi-process mode: this process's state gauges go to the shared files (run the result's ``run``)."""
        self._shared = SharedGauges(lambda: [m for c in self._collectors for m in c.collect()])
        return self._shared

    def render(self) -> tuple[bytes, str]:
        """The exposition text; aggregated over worker processes in multi-process mode."""
        if self.multiprocess:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            if self._shared is not None:
                self._shared.sample()  # this process's part as of now; the others' as of their last sample
            else:
                for collector in self._collectors:
                    registry.register(collector)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass(frozen=True, slots=True)
class BackendGauge:
    """One backend's state as the gauges show it."""

    model: str
    backend: str
    endpoint: str
    type: str
    usable: bool  # in rotation: enabled, healthy, circuit not open
    in_flight: int
    circuit: str  # closed | half_open | open


class FleetState(Protocol):
    """What the gateway reports to observability at scrape time (observability imports nothing from it)."""

    def backend_gauges(self) -> Iterable[BackendGauge]: ...

    def queue_depths(self) -> dict[str, int]: ...


class StateCollector(Collector):
    """Gauges read from live state at scrape time: backends, queue, models, this process's CPU and memory."""

    def __init__(self, state_of: Callable[[], FleetState | None], extra: Callable[[], Iterable[Metric]] | None = None):
        self._state_of = state_of
        self._extra = extra
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # prime: the next call measures since now

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        cpu = GaugeMetricFamily("llm_cpu_usage_percent", "CPU use of this Inferhub process since the last scrape.")
        cpu.add_metric([], self._process.cpu_percent(None))
        yield cpu
        memory = GaugeMetricFamily("llm_memory_usage_bytes", "Resident memory of this Inferhub process.")
        memory.add_metric([], self._process.memory_info().rss)
        yield memory
        fleet = self._state_of()
        if fleet is None:
            return
        up = GaugeMetricFamily("llm_backend_up", "1 if the backend is in rotation (enabled, healthy, circuit "
                               "not open).", labels=["model", "backend", "endpoint", "type"])  # fmt: skip
        in_flight = GaugeMetricFamily("llm_requests_in_flight", "Requests in flight per backend.",
                                      labels=["model", "backend"])  # fmt: skip
        circuit = GaugeMetricFamily("llm_backend_circuit_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
                                    labels=["model", "backend"])  # fmt: skip
        loaded = GaugeMetricFamily("llm_model_loaded", "1 if at least one backend of the model is in rotation.",
                                   labels=["model"])  # fmt: skip
        models: dict[str, int] = {}
        for gauge in fleet.backend_gauges():
            up.add_metric([gauge.model, gauge.backend, gauge.endpoint, gauge.type], 1.0 if gauge.usable else 0.0)
            in_flight.add_metric([gauge.model, gauge.backend], gauge.in_flight)
            circuit.add_metric([gauge.model, gauge.backend], CIRCUIT_VALUES[gauge.circuit])
            models[gauge.model] = max(models.get(gauge.model, 0), int(gauge.usable))
        for model, value in sorted(models.items()):
            loaded.add_metric([model], value)
        depth = GaugeMetricFamily("llm_queue_depth", "Requests waiting in the fair queue.", labels=["model"])
        for model, count in fleet.queue_depths().items():
            depth.add_metric([model], count)
        yield from (up, in_flight, circuit, loaded, depth)
        if self._extra is not None:
            yield from self._extra()
