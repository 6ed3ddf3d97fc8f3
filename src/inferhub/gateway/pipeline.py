"""Gateway: route a request to a backend, forward it, fail over, account for it.

Every feature (the OpenAI and Ollama routes, ``/generate``) calls these methods,
so routing, admission, failover, stats and logging hold everywhere. Bodies arrive
already checked by the HTTP layer and in the OpenAI shape.

For each request: resolve aliases → order the usable backends by the model's
strategy → take a slot (or wait fairly in the queue) → send. A failure before the
first byte (refused, reset, 5xx, timeout, garbage) is retried on the next
backend within the retry budget; when no backend of the model is usable, the
model's fallback chain is tried in order. An answer caused by the request
(``BackendRejected``, see ``backends/rejection.py``) is neither retried nor
counted against the backend.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from inferhub.backends.base import Adapter, Backend, Capability, StreamEvent
from inferhub.errors import APIError, ModelNotFound, UpstreamError
from inferhub.gateway._admission import AdmissionController
from inferhub.gateway.balancer import order_backends
from inferhub.gateway.context_limit import check_max_tokens
from inferhub.gateway.registry import BackendRegistry, canonical_model_name
from inferhub.gateway.retry_budget import RetryBudget
from inferhub.gateway.stats import StatsRecorder
from inferhub.observability.metrics import BackendGauge, Metrics
from inferhub.observability.tracing import Tracing, maybe_span

log = structlog.get_logger("inferhub.gateway")


@dataclass(frozen=True, slots=True)
class RequestMeta:
    """Who is asking and how urgently: used for fair queueing and session affinity."""

    party: str = "anonymous"
    priority: int = 0
    weight: int = 1
    affinity_key: str | None = None
    queue_timeout: float | None = None


@dataclass(slots=True)
class Routed:
    backend: Backend
    requested_model: str
    attempts: int = 1
    resolved_model: str | None = None  # the requested name after aliases: an alias is not a fallback

    @property
    def served_model(self) -> str:
        return self.backend.model_name

    @property
    def fell_back(self) -> bool:
        asked = self.resolved_model or self.requested_model
        return canonical_model_name(self.backend.model_name) != canonical_model_name(asked)


@dataclass(slots=True)
class StreamOutcome:
    """Filled in while a stream is consumed; read after it ends."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    usage_seen: bool = False
    error: UpstreamError | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    output_chunks: int = 0  # chunks that carried text: one token each on engines that stream without usage
    prompt_count: asyncio.Future[int] | None = None  # the prompt counted beside the engine (see Adapter)
    estimate_prompt: Callable[[], int] | None = None

    def count_unreported(self) -> None:
        """A stream that ended early (dropped, broken) before the engine reported usage is billed what is
        known: its prompt (counted here) and the tokens streamed so far. Synchronous: it runs in the
        ``finally`` of a cancelled request, where nothing can be awaited."""
        if self.usage_seen:
            return
        self.completion_tokens = max(self.completion_tokens, self.output_chunks)
        if self.prompt_tokens:
            return
        counted = self.prompt_count
        if counted is not None and counted.done() and not counted.cancelled() and counted.exception() is None:
            self.prompt_tokens = counted.result()
        elif self.estimate_prompt is not None:
            self.prompt_tokens = self.estimate_prompt()


@dataclass(slots=True)
class OpenStream:
    routed: Routed
    events: AsyncIterator[StreamEvent]
    outcome: StreamOutcome

    @property
    def backend(self) -> Backend:
        return self.routed.backend


_LABEL = {"chat": "chat completions", "completions": "completions", "embeddings": "embeddings"}


class Gateway:
    def __init__(
        self,
        registry: BackendRegistry,
        stats: StatsRecorder,
        *,
        retry_attempts: int = 3,
        retry_budget: RetryBudget | None = None,
        queue_timeout: float = 30.0,
        metrics: Metrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.registry = registry
        self.tracing = tracing
        self.stats = stats
        self.metrics = metrics
        self.admission = AdmissionController(registry.state, metrics, in_rotation=self._in_rotation)
        self.retry_attempts = max(1, retry_attempts)
        self.retry_budget = retry_budget or RetryBudget()
        self.queue_timeout = queue_timeout
        self.retries = 0
        self.fallbacks = 0

    # -- what observability reads at scrape time (observability.metrics.FleetState) ---------------

    def backend_gauges(self) -> list[BackendGauge]:
        registry = self.registry
        gauges = []
        for backend in registry.backends:
            state = registry.state(backend)
            gauges.append(BackendGauge(backend.model_name, backend.id, backend.endpoint_url, backend.backend_type,
                                       registry.usable(backend), state.in_flight,
                                       state.breaker.state.value))  # fmt: skip
        return gauges

    def queue_depths(self) -> dict[str, int]:
        return self.admission.queue_depths()

    # -- routing ---------------------------------------------------------------------------------

    def _plan(self, model: str, capability: Capability) -> list[str]:
        """The model, then its fallback chain (each followed once), as canonical names."""
        registry = self.registry
        first = registry.resolve(model)
        if not registry.candidates(first):
            raise ModelNotFound(
                f"The model '{model}' does not exist; GET /v1/models lists the available models", param="model"
            )
        group = registry.candidates(first)
        if not any(capability in registry.adapter(b).capabilities for b in group):
            raise registry.adapter(group[0]).unsupported(_LABEL[capability])
        plan, pending = [], [first]
        while pending:
            name = registry.resolve(pending.pop(0))
            if name in plan:
                continue
            plan.append(name)
            pending.extend(registry.route(name).fallback_models)
        return plan

    def _in_rotation(self, backend: Backend) -> bool:
        """Whether the backend takes new requests now. A drain or disable replaces the registry's
        ``Backend`` object, so look it up again by id rather than trust the one a request holds."""
        current = next((b for b in self.registry.candidates(backend.model_name) if b.id == backend.id), None)
        return current is not None and self.registry.usable(current)

    def _usable(self, model: str, capability: Capability, exclude: set[str]) -> list[Backend]:
        registry = self.registry
        return [
            b for b in registry.candidates(model)
            if b.id not in exclude and registry.usable(b) and capability in registry.adapter(b).capabilities
        ]  # fmt: skip

    async def _acquire(self, model: str, capability: Capability, body: dict[str, Any], meta: RequestMeta,
                       tried: set[str]) -> Backend | None:  # fmt: skip
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (meta.queue_timeout or self.queue_timeout)
        while True:  # again when the backends a queued request waited for leave the rotation
            usable = self._usable(model, capability, tried)
            if not usable:
                return None
            strategy = self.registry.route(model).strategy
            affinity = meta.affinity_key or (body.get("user") if isinstance(body.get("user"), str) else None)
            with maybe_span(self.tracing, "inferhub.routing", model=model, strategy=strategy, candidates=len(usable)):
                ordered = order_backends(strategy, usable, self.registry.state, affinity)
            with maybe_span(self.tracing, "inferhub.admission", model=model, party=meta.party,
                            priority=meta.priority):  # fmt: skip
                backend = await self.admission.acquire(
                    model, ordered, party=meta.party, priority=meta.priority, weight=meta.weight,
                    timeout=max(0.0, deadline - loop.time()),
                )  # fmt: skip
            if backend is not None:
                break
            log.info("queued_request_rerouted", model=model, waited_for=[b.id for b in ordered])
        log.info("routing_llm_request", model=model, backend=backend.id, strategy=strategy)
        return backend

    async def _attempts(self, requested: str, capability: Capability, body: dict[str, Any], meta: RequestMeta):
        """Yield (backend, attempt number) to try, in order; the caller reports each outcome."""
        self.retry_budget.on_request()
        attempt = 0
        previous: tuple[Backend, UpstreamError] | None = None
        failures: list[tuple[Backend, UpstreamError]] = []
        for model in self._plan(requested, capability):
            tried: set[str] = set()
            while attempt < self.retry_attempts:
                backend = await self._acquire(model, capability, body, meta, tried)
                if backend is None:
                    break
                tried.add(backend.id)
                if attempt > 0:
                    if not self.retry_budget.try_spend():
                        self.admission.release(backend)
                        assert previous is not None
                        raise _all_failed(failures)
                    self.retries += 1
                    if self.metrics:
                        self.metrics.retries.labels(requested).inc()
                    if previous is not None:
                        if canonical_model_name(backend.model_name) != canonical_model_name(previous[0].model_name):
                            self.fallbacks += 1
                            if self.metrics:
                                self.metrics.fallbacks.labels(requested, backend.model_name).inc()
                        log.warning("backend_failed_falling_back", model=requested, from_backend=previous[0].id,
                                    to_backend=backend.id, to_model=backend.model_name, code=previous[1].code,
                                    error=previous[1].message)  # fmt: skip
                elif model != self.registry.resolve(requested):
                    self.fallbacks += 1
                    if self.metrics:
                        self.metrics.fallbacks.labels(requested, model).inc()
                    log.warning("model_falling_back", model=requested, to_model=model,
                                reason="no usable backend")  # fmt: skip
                attempt += 1
                error = yield backend, attempt
                if error is None:
                    return
                previous = (backend, error)
                failures.append(previous)
            if attempt >= self.retry_attempts:
                break
        if previous is not None:
            raise _all_failed(failures)
        raise self._unavailable(requested)

    def _unavailable(self, requested: str) -> UpstreamError:
        """503 naming every backend of the model and why it is out of rotation."""
        reasons = []
        for backend in self.registry.candidates(requested):
            state = self.registry.state(backend)
            if not backend.enabled:
                why = "disabled"
            elif backend.draining:
                why = "draining"
            elif not state.healthy:
                why = f"unhealthy ({state.last_check_error or 'health check failed'})"
            else:
                why = f"circuit {state.breaker.state.value} after {state.breaker.consecutive_failures} failures"
            reasons.append(f"{backend.label}: {why}")
        return UpstreamError(
            f"no backend of model '{requested}' is available: " + "; ".join(reasons),
            status_code=503, code="no_backend_available", headers={"Retry-After": "5"},
            backend=",".join(b.id for b in self.registry.candidates(requested)),
        )  # fmt: skip

    def _upstream_span(self, backend: Backend, attempt: int, stream: bool = False):
        if self.tracing is None:
            return nullcontext()
        return self.tracing.upstream_span("inferhub.upstream", backend=backend.id, model=backend.model_name,
                                          endpoint=backend.endpoint_url, attempt=attempt, stream=stream)  # fmt: skip

    # -- outcomes --------------------------------------------------------------------------------

    def _succeeded(self, backend: Backend, elapsed: float, prompt_tokens: int, completion_tokens: int,
                   ttft: float | None = None) -> None:  # fmt: skip
        state = self.registry.state(backend)
        state.breaker.on_success()
        state.observe_latency(elapsed * 1000)
        self.stats.record(backend.id, ok=True, latency_s=elapsed, completion_tokens=completion_tokens)
        if self.metrics:
            self.metrics.observe_completion(backend.model_name, backend.id, elapsed, prompt_tokens,
                                            completion_tokens, ttft)  # fmt: skip

    def _failed(self, backend: Backend, elapsed: float, error: APIError) -> None:
        if isinstance(error, UpstreamError):
            state = self.registry.state(backend)
            if state.breaker.on_failure():
                log.warning("circuit_opened", backend=backend.id, model=backend.model_name,
                            failures=state.breaker.consecutive_failures)  # fmt: skip
            self.stats.record(backend.id, ok=False, latency_s=elapsed)
            if self.metrics:
                self.metrics.upstream_errors.labels(backend.model_name, backend.id, error.code or "error").inc()
        else:  # the engine answered (e.g. 400 context too long): healthy, but the request failed
            self.registry.state(backend).breaker.on_success()
            self.stats.record(backend.id, ok=True, latency_s=elapsed)
        log.warning("llm_request_failed", model=backend.model_name, backend=backend.id, status=error.status_code,
                    error=error.message)  # fmt: skip

    # -- non-streaming ---------------------------------------------------------------------------

    async def run(
        self, capability: Capability, body: dict[str, Any], meta: RequestMeta | None = None
    ) -> tuple[Routed, dict[str, Any]]:
        meta = meta or RequestMeta()
        requested = body["model"]
        if capability != "embeddings":
            check_max_tokens(self.registry.candidates(requested), requested, body)
        attempts = self._attempts(requested, capability, body, meta)
        backend, number = await attempts.__anext__()
        while True:
            adapter = self.registry.adapter(backend)
            upstream_body = _with_defaults(backend, body, capability)
            self.registry.state(backend).breaker.on_attempt()
            started = time.perf_counter()
            try:
                with self._upstream_span(backend, number):
                    result = await _call(adapter, capability, upstream_body)
            except UpstreamError as exc:
                self.admission.release(backend)
                self._failed(backend, time.perf_counter() - started, exc)
                backend, number = await attempts.asend(exc)
                continue
            except APIError as exc:
                self.admission.release(backend)
                self._failed(backend, time.perf_counter() - started, exc)
                await attempts.aclose()
                raise
            except BaseException:
                self.admission.release(backend)  # cancelled (client went away)
                await attempts.aclose()
                raise
            self.admission.release(backend)
            elapsed = time.perf_counter() - started
            used = result.get("usage") or {}
            completion_tokens = used.get("completion_tokens", 0) or 0
            self._succeeded(backend, elapsed, used.get("prompt_tokens", 0) or 0, completion_tokens)
            await attempts.aclose()
            log.info("llm_request_completed", model=requested, served_model=backend.model_name, backend=backend.id,
                     operation=capability, attempts=number, duration_ms=round(elapsed * 1000, 2),
                     prompt_tokens=used.get("prompt_tokens", 0), completion_tokens=completion_tokens)  # fmt: skip
            return Routed(backend, requested, number, self.registry.resolve(requested)), result

    def estimate_prompt_tokens(self, capability: Capability, body: dict[str, Any]) -> int:
        """The prompt tokens of a request that ended before its backend reported usage (the client left):
        counted here, exactly for a backend with a local counter, else estimated (characters/4)."""
        backends = self.registry.candidates(body["model"])
        if capability == "embeddings" or not backends:
            return 0
        return self.registry.adapter(backends[0]).estimate_prompt_tokens(_with_defaults(backends[0], body, capability))

    # -- streaming -------------------------------------------------------------------------------

    async def open_stream(
        self, capability: Capability, body: dict[str, Any], meta: RequestMeta | None = None
    ) -> OpenStream:
        """Open the upstream stream; failures until here are retried and raised before any byte is sent."""
        meta = meta or RequestMeta()
        requested = body["model"]
        if capability != "embeddings":
            check_max_tokens(self.registry.candidates(requested), requested, body)
        attempts = self._attempts(requested, capability, body, meta)
        backend, number = await attempts.__anext__()
        while True:
            adapter = self.registry.adapter(backend)
            upstream_body = _with_defaults(backend, body, capability)
            self.registry.state(backend).breaker.on_attempt()
            started = time.perf_counter()
            try:
                with self._upstream_span(backend, number, stream=True):
                    if capability == "chat":
                        upstream = await adapter.open_chat_stream(upstream_body)
                    else:
                        upstream = await adapter.open_completion_stream(upstream_body)
            except UpstreamError as exc:
                self.admission.release(backend)
                self._failed(backend, time.perf_counter() - started, exc)
                backend, number = await attempts.asend(exc)
                continue
            except BaseException as exc:
                self.admission.release(backend)
                if isinstance(exc, APIError):
                    self._failed(backend, time.perf_counter() - started, exc)
                await attempts.aclose()
                raise
            await attempts.aclose()
            routed = Routed(backend, requested, number, self.registry.resolve(requested))
            outcome = StreamOutcome(
                prompt_count=adapter.start_prompt_count(upstream_body),
                estimate_prompt=functools.partial(adapter.estimate_prompt_tokens, upstream_body),
            )
            events = self._account(routed, adapter, upstream_body, upstream, outcome, started)
            return OpenStream(routed, events, outcome)

    async def _account(
        self,
        routed: Routed,
        adapter: Adapter,
        body: dict[str, Any],
        upstream: AsyncIterator[StreamEvent],
        outcome: StreamOutcome,
        started: float,
    ) -> AsyncIterator[StreamEvent]:
        backend = routed.backend
        status: Literal["ok", "error", "cancelled"] = "cancelled"
        first_output: float | None = None
        last: dict[str, Any] = {}
        try:
            try:
                async for event in upstream:
                    data = last = event.data
                    used = data.get("usage")
                    if used:
                        outcome.usage_seen = True
                        outcome.prompt_tokens = used.get("prompt_tokens", 0) or 0
                        outcome.completion_tokens = used.get("completion_tokens", 0) or 0
                    choices = data.get("choices")
                    if choices:
                        choice = choices[0]
                        if choice.get("finish_reason"):
                            outcome.finish_reason = choice["finish_reason"]
                        delta = choice.get("delta")
                        if (delta and (delta.get("content") or delta.get("reasoning_content"))) or choice.get("text"):
                            outcome.output_chunks += 1
                            if first_output is None:
                                first_output = time.perf_counter()
                    yield event
                if not outcome.usage_seen:
                    # Engines such as llama.cpp's server stream one token per chunk and no usage.
                    outcome.completion_tokens = outcome.output_chunks
                    outcome.prompt_tokens = await _prompt_tokens(adapter, body, outcome.prompt_count)
                    yield StreamEvent(data=_usage_chunk(last, outcome))
            except Exception as exc:  # a break after the first byte: surfaced as an error event
                outcome.error = adapter.stream_broken(exc)
                status = "error"
                log.warning("llm_stream_broken", model=routed.requested_model, backend=backend.id,
                            error=outcome.error.message)  # fmt: skip
                raise outcome.error from None
            status = "ok"
        finally:
            self.admission.release(backend)
            elapsed = time.perf_counter() - started
            if status != "ok":
                outcome.count_unreported()
            if status == "error":
                assert outcome.error is not None
                self._failed(backend, elapsed, outcome.error)
            else:
                ttft = first_output - started if first_output is not None else None
                outcome.extra["ttft"] = ttft
                self._succeeded(backend, elapsed, outcome.prompt_tokens, outcome.completion_tokens, ttft)
            log.info("llm_request_completed", model=routed.requested_model, served_model=backend.model_name,
                     backend=backend.id, stream=True, status=status, attempts=routed.attempts,
                     duration_ms=round(elapsed * 1000, 2), prompt_tokens=outcome.prompt_tokens,
                     completion_tokens=outcome.completion_tokens)  # fmt: skip


async def _prompt_tokens(adapter: Adapter, body: dict[str, Any], counted: asyncio.Future[int] | None) -> int:
    if counted is not None:
        try:
            return await counted
        except Exception:
            pass
    return await adapter.count_prompt_tokens(body)


def _all_failed(failures: list[tuple[Backend, UpstreamError]]) -> UpstreamError:
    """The error for a request whose every attempt failed: the last one's, naming every backend tried."""
    last = failures[-1][1]
    if len({backend.id for backend, _ in failures}) < 2:
        return last
    return UpstreamError(
        f"all {len(failures)} attempts failed: " + "; ".join(error.message for _, error in failures),
        status_code=last.status_code, code=last.code, headers=last.headers,
        backend=",".join(backend.id for backend, _ in failures),
    )  # fmt: skip


async def _call(adapter: Adapter, capability: Capability, body: dict[str, Any]) -> dict[str, Any]:
    if capability == "chat":
        return await adapter.chat(body)
    if capability == "completions":
        return await adapter.completion(body)
    return await adapter.embeddings(body)


def _with_defaults(backend: Backend, body: dict[str, Any], capability: Capability) -> dict[str, Any]:
    if capability == "embeddings":
        return body
    if backend.max_tokens is not None and body.get("max_tokens") is None and not body.get("max_completion_tokens"):
        body = {**body, "max_tokens": backend.max_tokens}
    if backend.temperature_default is not None and body.get("temperature") is None:
        body = {**body, "temperature": backend.temperature_default}
    return body


def _usage_chunk(last: dict[str, Any], outcome: StreamOutcome) -> dict[str, Any]:
    """The final usage chunk OpenAI sends with ``stream_options.include_usage``, made from our own count."""
    return {
        "id": last.get("id", ""),
        "object": last.get("object", "chat.completion.chunk"),
        "created": last.get("created", int(time.time())),
        "model": last.get("model", ""),
        "choices": [],
        "usage": {
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
        },
    }
