"""What the HTTP layer receives from the server: the pipeline and the caches, nothing that touches SQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import Request

from inferhub.errors import APIError
from inferhub.gateway.auth import AdminUserCache, KeyCache, require_scope
from inferhub.gateway.pipeline import Gateway, RequestMeta, Routed
from inferhub.gateway.registry import BackendRegistry
from inferhub.tenancy.keys import KeyRecord, fair_queue_weight

if TYPE_CHECKING:  # types only: these modules import the API layer's neighbours, not the other way round
    from inferhub.gateway.metering import Meter
    from inferhub.rag.service import RagService
    from inferhub.store.admin_service import AdminService
    from inferhub.store.batches import BatchRepository, FileRepository
    from inferhub.store.config_service import ConfigService
    from inferhub.store.jobs import JobRepository

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]  # a JSON report: {"status": "ok" | ..., ...}


@dataclass
class AppContext:
    """What the routes get (``services.build_services`` makes it); ``None`` fields are off without a database."""

    gateway: Gateway
    registry: BackendRegistry
    keys: KeyCache
    default_chat_model: str | None = None
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    version: str = "0.1.0"
    stopping: bool = False  # SIGTERM received: draining (Connection: close, not ready) before the stop
    config: ConfigService | None = None  # admin operations
    meter: Meter | None = None  # allow-lists, limits, usage records
    admin: AdminService | None = None  # tenants, keys, users, usage queries
    signing_key: bytes = b""  # admin session JWTs and webhook secrets
    jobs: JobRepository | None = None
    files: FileRepository | None = None
    batches: BatchRepository | None = None
    rag: RagService | None = None
    default_embedding_model: str | None = None
    job_max_attempts: int = 5
    admin_token_minutes: int = 60
    admin_users: AdminUserCache | None = None  # who may hold an admin session (None without a database)


def context_of(request: Request) -> AppContext:
    return request.app.state.context


def authenticate(request: Request, scope: str = "inference") -> KeyRecord:
    record = context_of(request).keys.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    request.state.caller = record  # known, if not yet allowed: a refused inference request is billed to it
    require_scope(record, scope)
    request.state.key = record
    structlog.contextvars.bind_contextvars(key_prefix=record.prefix, tenant=_tenant_name(request, record))
    return record


def _tenant_name(request: Request, record: KeyRecord) -> str:
    """What log lines call the key's owner: its tenant's name (from the in-memory cache), or ``platform``."""
    meter = context_of(request).meter
    tenant = meter.tenants.get(record.tenant_id) if meter is not None else None
    if tenant is not None:
        return tenant.name
    return "platform" if record.tenant_id is None else str(record.tenant_id)


_PRIORITIES = {"low": -10, "normal": 0, "high": 10}


def request_meta(request: Request) -> RequestMeta:
    """Fair-queue party and weight, priority (``X-Priority: low|normal|high`` or -100..100) and affinity key.

    The party is the key's tenant (a key without a tenant is its own party); its weight, the ``weight``
    in the tenant's (or that key's) limits, is how many turns in a row it gets in a saturated model's queue.
    """
    record: KeyRecord | None = getattr(request.state, "key", None)
    raw = request.headers.get("x-priority", "").strip().lower()
    if raw in _PRIORITIES:
        priority = _PRIORITIES[raw]
    elif raw.lstrip("-").isdigit():
        priority = max(-100, min(100, int(raw)))
    elif raw:
        raise APIError("X-Priority: expected low, normal, high or an integer", param="X-Priority")
    else:
        priority = 0
    if record is None:
        return RequestMeta(priority=priority, affinity_key=request.headers.get("x-session-id") or None)
    if record.tenant_id is None:
        party, weight = f"key:{record.id}", fair_queue_weight(record.limits)
    else:
        meter = context_of(request).meter
        tenant = meter.tenants.get(record.tenant_id) if meter is not None else None
        party, weight = f"tenant:{record.tenant_id}", fair_queue_weight(tenant.limits) if tenant else 1
    return RequestMeta(
        party=party,
        priority=max(-100, min(100, priority + record.priority)),
        weight=weight,
        affinity_key=request.headers.get("x-session-id") or None,
    )


def routing_headers(routed: Routed) -> dict[str, str]:
    """Which backend and model answered; on a fallback, which model was asked for."""
    headers = {"x-inferhub-backend": routed.backend.id, "x-inferhub-model": routed.served_model}
    if routed.fell_back:
        headers["x-inferhub-fallback-from"] = routed.requested_model
    if routed.attempts > 1:
        headers["x-inferhub-attempts"] = str(routed.attempts)
    return headers


def pick_default_chat_model(context: AppContext) -> str:
    if context.default_chat_model and context.registry.candidates(context.default_chat_model):
        return context.default_chat_model
    for name in context.registry.model_names():
        backends = context.registry.candidates(name)
        if any("chat" in context.registry.adapter(b).capabilities for b in backends):
            return name
    raise APIError("no chat model is configured", status_code=503, code="no_backend_available")
