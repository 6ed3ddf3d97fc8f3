"""AdmissionController: a slot on a backend before a request is sent, or a fair wait for one.

Each backend has a concurrency limit (``max_concurrency``, else the default). When
every usable backend of a model is saturated the request waits in that model's
FairQueue; when a request finishes, its slot is handed straight to the next
waiter in fair order, if the backend is still in rotation. A slot freed on a
backend that left the rotation meanwhile (drained, disabled, unhealthy, circuit
open) goes to nobody, and waiters left with no backend in rotation are woken
with ``None`` so the pipeline routes them again (another backend, a fallback, or
a 503 naming why). A waiter that waits past its deadline gets 503 with
``Retry-After``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence

from inferhub.backends.base import Backend
from inferhub.errors import UpstreamError
from inferhub.gateway.backend_state import BackendState
from inferhub.gateway.fair_queue import FairQueue, Waiter
from inferhub.gateway.registry import canonical_model_name
from inferhub.observability.metrics import Metrics


class QueueTimeout(UpstreamError):
    status_code = 503
    code = "queue_timeout"


class AdmissionController:
    def __init__(
        self,
        state_of: Callable[[Backend], BackendState],
        metrics: Metrics | None = None,
        in_rotation: Callable[[Backend], bool] | None = None,
    ) -> None:
        self._state_of = state_of
        self._metrics = metrics
        self._in_rotation = in_rotation or (lambda backend: True)
        self.total_rerouted = 0
        self._queues: dict[str, FairQueue] = {}
        self.total_wait_seconds = 0.0
        self.total_waited = 0
        self.total_timeouts = 0

    def queue_depths(self) -> dict[str, int]:
        return {model: len(q) for model, q in self._queues.items() if len(q)}

    def oldest_waits(self) -> dict[str, float]:
        return {model: q.oldest_wait() for model, q in self._queues.items() if len(q)}

    async def acquire(
        self,
        model: str,
        ordered: Sequence[Backend],
        *,
        party: str,
        priority: int = 0,
        weight: int = 1,
        timeout: float = 30.0,
    ) -> Backend | None:
        """Reserve a slot on the first unsaturated backend in ``ordered``, or wait fairly for one.

        None means the backends it waited for left the rotation: route the request again.
        """
        for backend in ordered:
            state = self._state_of(backend)
            if not state.saturated:
                state.in_flight += 1
                return backend
        queue = self._queues.setdefault(canonical_model_name(model), FairQueue())
        loop = asyncio.get_running_loop()
        waiter = Waiter(party=party, priority=priority, allowed=frozenset(b.id for b in ordered),
                        future=loop.create_future(), weight=max(1, weight), candidates=tuple(ordered))  # fmt: skip
        queue.push(waiter)
        started = loop.time()
        try:
            backend = await asyncio.wait_for(asyncio.shield(waiter.future), timeout)
        except TimeoutError:
            queue.remove(waiter)
            if waiter.future.done() and not waiter.future.cancelled():
                backend = waiter.future.result()  # handed over at the last moment: use it
            else:
                waiter.future.cancel()
                self.total_timeouts += 1
                if self._metrics:
                    self._metrics.queue_timeouts.labels(model).inc()
                    self._metrics.queue_wait.labels(model).observe(loop.time() - started)
                raise QueueTimeout(
                    f"every backend of model '{model}' is busy and the request waited {timeout:g}s in the queue",
                    headers={"Retry-After": str(max(1, math.ceil(timeout / 10)))},
                ) from None
        except asyncio.CancelledError:
            queue.remove(waiter)
            if waiter.future.done() and not waiter.future.cancelled():
                if (handed := waiter.future.result()) is not None:
                    self.release(handed)
            else:
                waiter.future.cancel()
            raise
        waited = loop.time() - started
        self.total_waited += 1
        self.total_wait_seconds += waited
        if self._metrics:
            self._metrics.queue_wait.labels(model).observe(waited)
        return backend

    def release(self, backend: Backend) -> None:
        """Free the slot, or hand it to the next waiter in fair order if the backend is still in rotation."""
        queue = self._queues.get(canonical_model_name(backend.model_name))
        state = self._state_of(backend)
        if queue and len(queue):
            if not self._in_rotation(backend):
                state.in_flight = max(0, state.in_flight - 1)
                self._reroute_stranded(queue)
                return
            if state.in_flight <= state.max_concurrency:
                waiter = queue.pop_for(backend.id)
                if waiter is not None:
                    waiter.future.set_result(backend)  # the slot moves to the waiter; in_flight unchanged
                    return
        state.in_flight = max(0, state.in_flight - 1)

    def _reroute_stranded(self, queue: FairQueue) -> None:
        """Wake, to be routed again, the waiters none of whose backends is still in rotation."""
        for waiter in queue.waiters():
            if waiter.future.done() or any(self._in_rotation(b) for b in waiter.candidates):
                continue
            queue.remove(waiter)
            waiter.future.set_result(None)
            self.total_rerouted += 1

    def offer_free_slots(self, backends: Sequence[Backend]) -> None:
        """Wake waiters when capacity appeared without a release (limit raised, backend back in rotation)."""
        for backend in backends:
            queue = self._queues.get(canonical_model_name(backend.model_name))
            state = self._state_of(backend)
            while queue and len(queue) and not state.saturated:
                waiter = queue.pop_for(backend.id)
                if waiter is None:
                    break
                state.in_flight += 1
                waiter.future.set_result(backend)
