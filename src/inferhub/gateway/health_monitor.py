"""HealthMonitor: active checks of every backend on an interval, model discovery, and vLLM load.

Checks follow the engine: ``/v1/models`` (OpenAI-compatible), ``/api/tags``
(Ollama), ``/health`` (TEI). A failed check takes the backend out of rotation; the
next passing one brings it back. For vLLM, ``/metrics`` gives the engine's own
running and waiting counts, which admission treats as load. Discovery polls the
same listings and lets the registry serve every model an endpoint reports.
"""

from __future__ import annotations

import asyncio
import re
import time

import structlog

from inferhub.backends.base import Backend
from inferhub.gateway._admission import AdmissionController
from inferhub.gateway.registry import BackendRegistry

log = structlog.get_logger("inferhub.health")

_VLLM_GAUGE = re.compile(rb"^vllm:num_requests_(running|waiting)(?:\{[^}]*\})?\s+([0-9.eE+-]+)", re.MULTILINE)


class HealthMonitor:
    def __init__(
        self,
        registry: BackendRegistry,
        admission: AdmissionController,
        *,
        interval: float = 5.0,
        discovery_interval: float = 30.0,
        timeout: float = 3.0,
    ) -> None:
        self.registry = registry
        self.admission = admission
        self.interval = interval
        self.discovery_interval = discovery_interval
        self.timeout = timeout
        self._last_discovery = 0.0

    async def run(self) -> None:
        while True:
            try:
                await self.check_all()
            except Exception as exc:  # never let the monitor die
                log.warning("health_check_round_failed", error=str(exc))
            await asyncio.sleep(self.interval)

    async def check_all(self) -> None:
        backends = [b for b in self.registry.backends if b.backend_type != "embedded" and b.source != "discovered"]
        await asyncio.gather(*(self._check(b) for b in backends))
        # Discovered entries share their parent's engine: they share its health.
        for backend in self.registry.backends:
            if backend.source == "discovered":
                parent = self.registry.states.get(backend.id.split(":", 1)[0])
                if parent is not None:
                    self.registry.states[backend.id].healthy = parent.healthy
        if time.monotonic() - self._last_discovery >= self.discovery_interval:
            self._last_discovery = time.monotonic()
            await self.discover()
        self.admission.offer_free_slots([b for b in self.registry.backends if self.registry.usable(b)])

    async def _check(self, backend: Backend) -> None:
        state = self.registry.state(backend)
        adapter = self.registry.adapter(backend)
        try:
            ok = await asyncio.wait_for(adapter.check_health(), self.timeout)
            error = None if ok else "health check failed"
        except Exception as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
        if ok and backend.backend_type == "vllm":
            await self._read_vllm_load(backend)
        if ok != state.healthy:
            if ok:
                log.info("backend_recovered", backend=backend.id, model=backend.model_name)
            else:
                log.warning("backend_unhealthy", backend=backend.id, model=backend.model_name, error=error)
        state.healthy = ok
        state.last_check_error = error

    async def _read_vllm_load(self, backend: Backend) -> None:
        state = self.registry.state(backend)
        try:
            response = await self.registry.client_for(backend.endpoint_url, backend.timeout_seconds).get(
                "/metrics", timeout=self.timeout
            )
        except Exception:
            return
        if response.status_code != 200:
            return
        totals = {b"running": 0.0, b"waiting": 0.0}
        for kind, value in _VLLM_GAUGE.findall(response.content):
            totals[kind] += float(value)
        state.engine_running = int(totals[b"running"])
        state.engine_waiting = int(totals[b"waiting"])

    async def discover(self) -> None:
        stored = [b for b in self.registry.backends if b.source not in ("local", "discovered") and b.discover_models]
        for backend in stored:
            if not self.registry.state(backend).healthy:
                continue
            adapter = self.registry.adapter(backend)
            try:
                models = await asyncio.wait_for(adapter.list_models(), self.timeout)
            except Exception:
                continue
            if self.registry.set_discovered(backend.id, models):
                log.info("models_discovered", backend=backend.id, models=models)
        await self._learn_capabilities()

    async def _learn_capabilities(self) -> None:
        """Ask each engine once what a backend without declared capabilities serves (Ollama: /api/show)."""
        for backend in self.registry.backends:
            if backend.source == "local" or backend.capabilities is not None or self.registry.learned(backend):
                continue
            if not self.registry.state(backend).healthy:
                continue
            try:
                learned = await asyncio.wait_for(self.registry.adapter(backend).learn_capabilities(), self.timeout)
            except Exception:
                continue  # asked again at the next discovery
            if self.registry.set_learned(backend, learned) and learned is not None:
                log.info("capabilities_learned", backend=backend.id, capabilities=sorted(learned))
