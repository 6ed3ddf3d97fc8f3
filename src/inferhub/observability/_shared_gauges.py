"""The scrape-time gauges of ``--workers N``, shared through prometheus-client's multi-process files.

Gauges such as ``llm_requests_in_flight`` are read from live state when ``/metrics`` is scraped
(``StateCollector``), so a scrape used to show the state of whichever worker answered it. With
``PROMETHEUS_MULTIPROC_DIR`` set, each worker copies those gauges into multi-process ``Gauge``s every
``interval`` seconds (and the answering worker once more before it renders), and ``MultiProcessCollector``
combines the workers' files with one mode per gauge:

* summed over the live workers (``livesum``): requests in flight, queue depth, CPU and memory of the
  processes, usage records not yet written;
* the worst worker's view (``livemin``/``livemax``): a backend is up, and a model loaded, only if every
  worker has it in rotation; a circuit is as open as the most open worker's;
* anything else (jobs by state, budget ratios: the same shared source in every worker): ``livemax``.

A dead worker's values go with it (the supervisor marks its pid dead). A label set that disappears (a
removed backend) is set to 0, since prometheus-client cannot delete a series from its files.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import Metric

MODES = {
    "llm_requests_in_flight": "livesum",
    "llm_queue_depth": "livesum",
    "llm_cpu_usage_percent": "livesum",
    "llm_memory_usage_bytes": "livesum",
    "llm_usage_writer_pending": "livesum",
    "llm_usage_writer_oldest_pending_seconds": "livemax",
    "llm_backend_up": "livemin",
    "llm_model_loaded": "livemin",
    "llm_backend_circuit_state": "livemax",
}
DEFAULT_MODE = "livemax"


class SharedGauges:
    """Copies the gauges of ``collect`` (this process's live state) into the multi-process files."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect
        self._registry = CollectorRegistry()  # holds the Gauge objects; never rendered itself
        self._gauges: dict[str, Gauge] = {}
        self._seen: dict[str, set[tuple[str, ...]]] = {}

    def sample(self) -> None:
        for family in self._collect():
            if family.type != "gauge":
                continue
            current: dict[tuple[str, ...], float] = {}
            names: tuple[str, ...] = ()
            for sample in family.samples:
                names = tuple(sample.labels)
                current[tuple(sample.labels.values())] = sample.value
            gauge = self._gauge(family, names) if current or family.name in self._gauges else None
            if gauge is None:
                continue
            for values in self._seen.get(family.name, set()) - current.keys():
                self._child(gauge, values).set(0)
            for values, value in current.items():
                self._child(gauge, values).set(value)
            self._seen[family.name] = set(current)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            self.sample()
            await asyncio.sleep(interval)

    def _gauge(self, family: Metric, labels: tuple[str, ...]) -> Gauge:
        gauge = self._gauges.get(family.name)
        if gauge is None:
            gauge = Gauge(family.name, family.documentation, labels, registry=self._registry,
                          multiprocess_mode=MODES.get(family.name, DEFAULT_MODE))  # fmt: skip
            self._gauges[family.name] = gauge
        return gauge

    @staticmethod
    def _child(gauge: Gauge, values: tuple[str, ...]) -> Gauge:
        return gauge.labels(*values) if values else gauge
