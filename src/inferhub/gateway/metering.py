"""Meter: what happens around every inference request for a tenant.

``admit`` checks the key's model allow-list and the limits of the key and its
tenant (429 with OpenAI's rate-limit headers when over); ``close`` computes the
cost at today's price and builds the request's one usage record; ``settle`` counts
the tokens against the limits and budgets, even when the request's task is being
cancelled. ``gateway.service`` is the one caller that strings these together. Cost is
fixed at record time, so a later price change does not rewrite history.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from inferhub.errors import PermissionDenied
from inferhub.gateway.limits import Admission, Limiter, Scope
from inferhub.tenancy.keys import WEIGHT, KeyRecord
from inferhub.tenancy.tenants import TenantRecord
from inferhub.tenancy.usage import Price, UsageRecord


class TenantCache:
    """Tenants by id, in memory (reloaded on NOTIFY like keys and backends)."""

    def __init__(self) -> None:
        self._by_id: dict[int, TenantRecord] = {}

    def replace(self, records: list[TenantRecord]) -> None:
        self._by_id = {r.id: r for r in records}

    def get(self, tenant_id: int | None) -> TenantRecord | None:
        return self._by_id.get(tenant_id) if tenant_id is not None else None

    def all(self) -> list[TenantRecord]:
        return list(self._by_id.values())


class PriceCache:
    def __init__(self) -> None:
        self._prices: dict[str, Price] = {}

    def replace(self, prices: dict[str, Price]) -> None:
        self._prices = dict(prices)

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
        price = self._prices.get(model)
        return price.cost(prompt_tokens, completion_tokens) if price else Decimal(0)


@dataclass(slots=True)
class Ticket:
    key: KeyRecord
    tenant: TenantRecord | None
    endpoint: str
    model: str
    admission: Admission
    client_ip: str | None
    request_bytes: int
    started: float = field(default_factory=time.perf_counter)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    finished: bool = False

    @property
    def headers(self) -> dict[str, str]:
        return self.admission.headers


class Meter:
    """Allow-list, limits, cost and the usage record of one request; where the record goes is the caller's
    (``gateway.service.InferenceService`` hands it to its sink), so the meter holds no writer."""

    def __init__(self, limiter: Limiter, tenants: TenantCache, prices: PriceCache, metrics: Any = None) -> None:
        self.limiter = limiter
        self.tenants = tenants
        self.prices = prices
        self.metrics = metrics
        self._settling: set[asyncio.Task] = set()

    def ticket(self, key: KeyRecord, tenant: TenantRecord | None, *, endpoint: str, model: str,
               client_ip: str | None = None, request_bytes: int = 0,
               request_id: str | None = None) -> Ticket:  # fmt: skip
        """The request's ticket, not yet admitted: closing it leaves a record and counts nothing."""
        ticket = Ticket(key, tenant, endpoint, model, Admission(scopes=[]), client_ip, request_bytes)
        if request_id:
            ticket.request_id = request_id
        return ticket

    async def admit(self, ticket: Ticket) -> None:
        """The key's model allow-list, then the limits of the key and its tenant (429 with rate-limit headers)."""
        key, tenant, model = ticket.key, ticket.tenant, ticket.model
        if not key.allows_model(model):
            raise PermissionDenied(
                f"API key {key.prefix}… may not use model '{model}' (allowed: {', '.join(key.allowed_models)})",
                code="model_not_allowed", param="model",
            )  # fmt: skip
        scopes = [Scope("key", key.id, _counted(key.limits), key.prefix)]
        if tenant is not None:
            scopes.append(Scope("tenant", tenant.id, _counted(tenant.limits), tenant.name))
        ticket.admission = await self.limiter.admit(scopes)

    async def settle(self, ticket: Ticket, record: UsageRecord) -> None:
        """Count the request's tokens and cost against its limits and give back its concurrency slot.

        Cancellation-safe: the limiter is settled in a task of its own. A client that goes away
        mid-stream makes Starlette cancel the request's task, and inside a cancelled scope every
        ``await`` is cancelled too; the concurrency slot (in Redis) must not go with it. (The record
        itself is handed on synchronously by the caller, before this is awaited.)
        """
        if not ticket.admission.scopes:
            return  # nothing counted, nothing to give back
        task = asyncio.ensure_future(
            self.limiter.settle(ticket.admission, record.prompt_tokens + record.completion_tokens, record.cost)
        )
        self._settling.add(task)  # held until done: a cancelled caller does not cancel (or drop) the task
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    def close(self, ticket: Ticket, *, status: int, served_model: str | None = None, backend: str | None = None,
               prompt_tokens: int = 0, completion_tokens: int = 0, ttft: float | None = None,
               response_bytes: int = 0, prompt: Any = None, completion: str | None = None,
               ) -> UsageRecord | None:  # fmt: skip
        """Mark the ticket finished (once) and build its usage record, with the cost at today's price."""
        if ticket.finished:
            return None
        ticket.finished = True
        model = served_model or ticket.model
        cost = self.prices.cost(model, prompt_tokens, completion_tokens)
        store = ticket.tenant is not None and ticket.tenant.store_payloads
        if self.metrics is not None:
            tenant = ticket.tenant.name if ticket.tenant else "platform"
            self.metrics.observe_usage(tenant, model, prompt_tokens, completion_tokens, float(cost))
        return UsageRecord(
            request_id=ticket.request_id, at=datetime.now(UTC), tenant_id=ticket.key.tenant_id, key_id=ticket.key.id,
            endpoint=ticket.endpoint, model=_storable(model, 200), backend=_storable(backend, 200),
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
            latency_ms=(time.perf_counter() - ticket.started) * 1000, ttft_ms=ttft * 1000 if ttft is not None else None,
            status=status, cost=cost, client_ip=_storable(ticket.client_ip, 64), request_bytes=ticket.request_bytes,
            response_bytes=response_bytes, prompt=_without_nul(prompt) if store else None,
            completion=_without_nul(completion) if store else None,
        )  # fmt: skip


def _counted(limits: dict[str, Any]) -> dict[str, Any]:
    """The limits the limiter counts: the fair-queue ``weight`` is kept with them but is no limit."""
    if WEIGHT not in limits:
        return limits
    return {name: value for name, value in limits.items() if name != WEIGHT}


def _storable(text: str | None, length: int) -> str | None:
    """A text column's value: PostgreSQL refuses NUL bytes and over-long values, which would fail the whole batch."""
    if text is None or (len(text) <= length and "\x00" not in text):
        return text
    return text.replace("\x00", "")[:length]


def _without_nul(value: Any) -> Any:
    """Stored payloads (text and JSONB) cannot hold NUL characters; drop them rather than lose the batch."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value
