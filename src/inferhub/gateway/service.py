"""InferenceService: the one pipeline every caller goes through.

allow-list → limits (``Meter``) → fair queue → route → forward (``Gateway``) → usage (``Meter``, then a sink).
The OpenAI, Ollama and ``/generate`` routes, RAG retrieval, the job worker and the dashboard playground each
build a :class:`Call` and hand it here, so someone changing billing or limits finds one place. Where the usage
record goes is the sink's business: the batched ``UsageWriter`` for live traffic, a :class:`RecordCapture`
for a job, whose one record is stored with its outcome (``with_sink``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import orjson

from inferhub.backends.base import Capability, StreamEvent
from inferhub.errors import APIError, ClientDisconnected
from inferhub.gateway.metering import Meter, Ticket
from inferhub.gateway.pipeline import Gateway, OpenStream, RequestMeta, Routed
from inferhub.tenancy.keys import KeyRecord, fair_queue_weight
from inferhub.tenancy.tenants import TenantRecord
from inferhub.tenancy.usage import UsageRecord

__all__ = [
    "Call",
    "Caller",
    "InferenceService",
    "MeteredWork",
    "Operation",
    "RecordCapture",
    "RequestInfo",
    "Result",
    "StreamResult",
    "UsageSink",
    "fair_queue_meta",
    "routing_headers",
]

Operation = Capability | Literal["retrieval", "ingestion"]
Watch = Callable[[Awaitable[Any]], Awaitable[Any]]


class UsageSink(Protocol):
    """Where usage records go; ``add`` must not block (it runs in the ``finally`` of a cancelled request)."""

    def add(self, record: UsageRecord) -> None: ...


class RecordCapture:
    """A sink that hands the records back to its caller: a job stores its one record with its outcome."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def add(self, record: UsageRecord) -> None:
        self.records.append(record)

    def take(self) -> UsageRecord | None:
        """The latest record (None if there is none), and forget them all."""
        record = self.records[-1] if self.records else None
        self.records.clear()
        return record


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the key and its tenant, resolved once (at authentication) from the in-memory caches."""

    key: KeyRecord
    tenant: TenantRecord | None = None

    @property
    def name(self) -> str:
        """What log lines call the key's owner: its tenant's name, or ``platform``."""
        if self.tenant is not None:
            return self.tenant.name
        return "platform" if self.key.tenant_id is None else str(self.key.tenant_id)

    def fair_queue(self) -> tuple[str, int]:
        """The fair-queue party and its weight: the key's tenant (a key without one is its own party), and the
        ``weight`` in the tenant's (or that key's) limits, the turns in a row it gets in a saturated queue."""
        key = self.key
        if key.tenant_id is None:
            return f"key:{key.id}", fair_queue_weight(key.limits)
        return f"tenant:{key.tenant_id}", fair_queue_weight(self.tenant.limits) if self.tenant else 1


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the pipeline needs from the request beside its body (the usage record, priority, affinity)."""

    client_ip: str | None = None
    request_bytes: int = 0
    priority: str = ""  # X-Priority as sent (low|normal|high or -100..100); checked once the request is admitted
    session_id: str | None = None  # X-Session-Id: the session-affinity key
    request_id: str | None = None  # the usage record's id (a job's is "job:<id>"); a fresh one if None


@dataclass(slots=True)
class Call:
    """One request for the pipeline. ``body`` is in the OpenAI shape and carries the ``model`` to meter."""

    caller: Caller
    operation: Operation
    body: dict[str, Any]
    endpoint: str  # the usage record's endpoint
    info: RequestInfo = field(default_factory=RequestInfo)
    meta: RequestMeta | None = None  # fair-queue terms the caller sets itself (jobs); else from caller and info
    watch: Watch | None = None  # awaits the forward; the HTTP adapter's cancels it (a 499) when the client leaves

    @property
    def model(self) -> str:
        return self.body["model"]


@dataclass(frozen=True, slots=True)
class Result:
    routed: Routed
    body: dict[str, Any]  # the OpenAI-shaped answer
    headers: dict[str, str]  # routing and rate-limit headers for the response


@dataclass(frozen=True, slots=True)
class StreamResult:
    stream: OpenStream  # its events are wrapped: the usage record is written when they end, however they end
    headers: dict[str, str]

    @property
    def routed(self) -> Routed:
        return self.stream.routed


class MeteredWork:
    """Metered work that is not one forward (RAG retrieval, ingestion): it reports what it used here."""

    def __init__(self, call: Call, meta_of: Callable[[Call], RequestMeta]) -> None:
        self.call = call
        self.prompt_tokens = 0
        self.served_model: str | None = None
        self._meta_of = meta_of

    @property
    def meta(self) -> RequestMeta:
        """The fair-queue terms for the work's own gateway calls (a bad X-Priority raises a 400 here)."""
        return self._meta_of(self.call)


_PRIORITIES = {"low": -10, "normal": 0, "high": 10}


class InferenceService:
    """The pipeline. Without a meter (no database) requests are routed and forwarded, not metered."""

    def __init__(self, gateway: Gateway, meter: Meter | None = None, sink: UsageSink | None = None) -> None:
        if meter is not None and sink is None:
            raise ValueError("a metered service needs a sink for its usage records")
        self.gateway = gateway
        self.meter = meter
        self.sink = sink

    def with_sink(self, sink: UsageSink) -> InferenceService:
        """The same pipeline (gateway, meter, limits), its usage records going to ``sink``."""
        return InferenceService(self.gateway, self.meter, sink)

    def caller(self, key: KeyRecord) -> Caller:
        """The key with its tenant, from the tenant cache."""
        tenant = self.meter.tenants.get(key.tenant_id) if self.meter is not None else None
        return Caller(key, tenant)

    # -- the pipeline ----------------------------------------------------------------------------

    async def call(self, call: Call) -> Result:
        """Non-streaming: the routed backend, the OpenAI-shaped result and the response headers."""
        assert call.operation in ("chat", "completions", "embeddings"), call.operation
        capability: Capability = call.operation  # type: ignore[assignment]
        ticket = await self._begin(call)
        try:
            forward = self.gateway.run(capability, call.body, self._meta(call))
            routed, body = await (call.watch(forward) if call.watch is not None else forward)
        except ClientDisconnected as exc:  # the upstream call was cancelled: bill the prompt, as a dropped stream
            if ticket is not None:
                prompt_tokens = self.gateway.estimate_prompt_tokens(capability, call.body)
                await self._finish(ticket, status=exc.status_code, prompt_tokens=prompt_tokens,
                                   prompt=_prompt_of(call.body))  # fmt: skip
            raise
        except APIError as exc:
            if ticket is not None:
                await self._finish(ticket, status=exc.status_code)
                exc.headers = {**ticket.headers, **exc.headers}
            raise
        except BaseException:
            if ticket is not None:
                await self._finish(ticket, status=499)  # the caller went away
            raise
        headers = routing_headers(routed)
        if ticket is not None:
            used = body.get("usage") or {}
            choices = body.get("choices") or [{}]
            completion = (choices[0].get("message") or {}).get("content") or choices[0].get("text")
            await self._finish(
                ticket, status=200, served_model=routed.served_model, backend=routed.backend.id,
                prompt_tokens=used.get("prompt_tokens", 0) or 0,
                completion_tokens=used.get("completion_tokens", 0) or 0, prompt=_prompt_of(call.body),
                completion=completion, response_bytes=len(orjson.dumps(body)),
            )  # fmt: skip
            headers.update(ticket.headers)
        return Result(routed, body, headers)

    async def stream(self, call: Call) -> StreamResult:
        """Streaming: the stream is open (failures until here are raised), its usage written when it ends."""
        assert call.operation in ("chat", "completions"), call.operation
        capability: Capability = call.operation  # type: ignore[assignment]
        ticket = await self._begin(call)
        try:
            stream = await self.gateway.open_stream(capability, call.body, self._meta(call))
        except APIError as exc:
            if ticket is not None:
                await self._finish(ticket, status=exc.status_code)
                exc.headers = {**ticket.headers, **exc.headers}
            raise
        except BaseException:
            if ticket is not None:
                await self._finish(ticket, status=499)
            raise
        headers = routing_headers(stream.routed)
        if ticket is not None:
            headers.update(ticket.headers)
            stream.events = self._metered_events(stream, stream.events, ticket, call.body)
        return StreamResult(stream, headers)

    @contextlib.asynccontextmanager
    async def metered(self, call: Call) -> AsyncIterator[MeteredWork]:
        """Meter work that is not one forward (RAG retrieval, ingestion) like a request: allow-list and limits
        first, then one usage record with the prompt tokens (and model) it reports; an error is recorded with
        its status (and gets the rate-limit headers), anything else as a 500."""
        ticket = await self._begin(call)
        work = MeteredWork(call, self._meta)
        if ticket is None:
            yield work
            return
        try:
            yield work
        except APIError as exc:
            await self._finish(ticket, status=exc.status_code)
            exc.headers = {**ticket.headers, **exc.headers}
            raise
        except BaseException:
            await self._finish(ticket, status=500)
            raise
        await self._finish(ticket, status=200, prompt_tokens=work.prompt_tokens, served_model=work.served_model)

    async def refused(self, caller: Caller, *, endpoint: str, model: str, status: int,
                      info: RequestInfo | None = None) -> None:  # fmt: skip
        """The usage record of a request refused before the pipeline saw it (bad input, a missing scope);
        nothing is counted against the limits."""
        if self.meter is None:
            return
        info = info or RequestInfo()
        ticket = self.meter.ticket(caller.key, caller.tenant, endpoint=endpoint, model=model,
                                   client_ip=info.client_ip, request_bytes=info.request_bytes)  # fmt: skip
        await self._finish(ticket, status=status)

    # -- metering --------------------------------------------------------------------------------

    async def _begin(self, call: Call) -> Ticket | None:
        """Admit the call (allow-list, limits); a refusal leaves its usage record too."""
        if self.meter is None:
            return None
        info = call.info
        ticket = self.meter.ticket(call.caller.key, call.caller.tenant, endpoint=call.endpoint, model=call.model,
                                   client_ip=info.client_ip, request_bytes=info.request_bytes,
                                   request_id=info.request_id)  # fmt: skip
        try:
            await self.meter.admit(ticket)
        except APIError as exc:  # refused requests are in the request log too
            await self._finish(ticket, status=exc.status_code)
            raise
        return ticket

    async def _finish(self, ticket: Ticket, **outcome: Any) -> None:
        """Hand the usage record to the sink (synchronously, before anything can be cancelled), then settle
        the limits (in a task of its own, see ``Meter.settle``). A ticket is finished once."""
        assert self.meter is not None and self.sink is not None
        record = self.meter.close(ticket, **outcome)
        if record is not None:
            self.sink.add(record)
            await self.meter.settle(ticket, record)

    async def _metered_events(self, stream: OpenStream, upstream: AsyncIterator[StreamEvent], ticket: Ticket,
                              body: dict[str, Any]) -> AsyncIterator[StreamEvent]:  # fmt: skip
        keep_text = ticket.tenant is not None and ticket.tenant.store_payloads
        text: list[str] = []
        status = 499
        size = 0
        try:
            async for event in upstream:
                size += len(event.raw) if event.raw is not None else len(orjson.dumps(event.data))
                if keep_text:
                    for choice in event.data.get("choices") or ():
                        piece = (choice.get("delta") or {}).get("content") or choice.get("text")
                        if piece:
                            text.append(piece)
                yield event
            status = 200
        except APIError as exc:
            status = exc.status_code
            raise
        finally:
            outcome = stream.outcome
            if status != 200:
                outcome.count_unreported()  # dropped or broken before the engine reported usage
            await self._finish(
                ticket, status=status, served_model=stream.routed.served_model, backend=stream.backend.id,
                prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
                ttft=outcome.extra.get("ttft"), prompt=_prompt_of(body),
                completion="".join(text) if keep_text else None, response_bytes=size,
            )  # fmt: skip

    # -- fair queue ------------------------------------------------------------------------------

    @staticmethod
    def _meta(call: Call) -> RequestMeta:
        return call.meta if call.meta is not None else fair_queue_meta(call.caller, call.info)


def fair_queue_meta(caller: Caller, info: RequestInfo) -> RequestMeta:
    """Fair-queue party and weight (the caller's), priority (X-Priority plus the key's) and affinity key."""
    party, weight = caller.fair_queue()
    priority = max(-100, min(100, _priority(info.priority) + caller.key.priority))
    return RequestMeta(party=party, priority=priority, weight=weight, affinity_key=info.session_id or None)


def _priority(raw: str) -> int:
    raw = raw.strip().lower()
    if raw in _PRIORITIES:
        return _PRIORITIES[raw]
    if raw.lstrip("-").isdigit():
        return max(-100, min(100, int(raw)))
    if raw:
        raise APIError("X-Priority: expected low, normal, high or an integer", param="X-Priority")
    return 0


def _prompt_of(body: dict[str, Any]) -> Any:
    return body.get("messages", body.get("prompt", body.get("input")))


def routing_headers(routed: Routed) -> dict[str, str]:
    """Which backend and model answered; on a fallback, which model was asked for."""
    headers = {"x-inferhub-backend": routed.backend.id, "x-inferhub-model": routed.served_model}
    if routed.fell_back:
        headers["x-inferhub-fallback-from"] = routed.requested_model
    if routed.attempts > 1:
        headers["x-inferhub-attempts"] = str(routed.attempts)
    return headers
