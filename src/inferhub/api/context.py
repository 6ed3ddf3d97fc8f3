"""What the HTTP layer receives from the server: the pipeline and the caches, nothing that touches SQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import Request

from inferhub.errors import APIError
from inferhub.gateway.auth import AdminUserCache, KeyCache, require_scope
from inferhub.gateway.metering import Meter
from inferhub.gateway.pipeline import Gateway, RequestMeta
from inferhub.gateway.registry import BackendRegistry
from inferhub.gateway.service import Caller, InferenceService, RequestInfo, fair_queue_meta
from inferhub.tenancy.keys import KeyRecord

if TYPE_CHECKING:  # types only: these modules import the API layer's neighbours, not the other way round
    from inferhub.gateway.metering import Meter
    from inferhub.rag.service import RagService
    from inferhub.store.admin_service import AdminService
    from inferhub.store.batches import BatchRepository, FileRepository
    from inferhub.store.config_service import ConfigService
    from inferhub.store.jobs import JobRepository
    from inferhub.store.responses import ResponseRepository

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
    config: ConfigService | None = None  # admin operations (None without a database)
    meter: Meter | None = None  # allow-lists, limits, the tenant cache (None without a database)
    admin: AdminService | None = None  # tenants, keys, users, usage queries
    signing_key: bytes = b""  # admin session JWTs and webhook secrets
    jobs: JobRepository | None = None
    responses: ResponseRepository | None = None  # stored Responses (OpenAI Responses API)
    files: FileRepository | None = None
    batches: BatchRepository | None = None
    rag: RagService | None = None
    default_embedding_model: str | None = None
    job_max_attempts: int = 5
    admin_token_minutes: int = 60
    admin_users: AdminUserCache | None = None  # who may hold an admin session (None without a database)
    # The pipeline every inference request goes through (server.py builds it with the meter and the usage
    # writer); an app built without a meter (no database) gets one that routes and forwards, unmetered.
    service: InferenceService = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.service is None:
            if self.meter is not None:
                raise ValueError("a context with a meter needs its InferenceService (built with the usage sink)")
            self.service = InferenceService(self.gateway, None)


@dataclass(slots=True)
class Authenticated:
    """What ``authenticate`` leaves on ``request.state.auth``, the one object the routes keep there.

    The caller is known even when its key lacks the route's scope: a refused inference request is billed
    to it. ``body`` and ``metered`` serve the usage record of a request refused before the pipeline saw it.
    """

    caller: Caller
    body: dict[str, Any] | None = None  # the parsed body (its model), once read
    metered: bool = False  # the service took the request: it records it, refused or not


def context_of(request: Request) -> AppContext:
    return request.app.state.context


def authenticated(request: Request) -> Authenticated | None:
    """The request's caller, if ``authenticate`` has seen a valid key."""
    return getattr(request.state, "auth", None)


def authenticate(request: Request, scope: str = "inference") -> KeyRecord:
    """The request's key (401 without a valid one, 403 without ``scope``); its caller is resolved once."""
    record = context_of(request).keys.authenticate(
        request.headers.get("authorization"), request.headers.get("x-api-key")
    )
    known = authenticated(request)
    if known is None or known.caller.key.id != record.id:
        known = Authenticated(context_of(request).service.caller(record))
        request.state.auth = known
    require_scope(record, scope)
    structlog.contextvars.bind_contextvars(key_prefix=record.prefix, tenant=known.caller.name)
    return record


def caller_of(request: Request) -> Caller:
    """The caller ``authenticate`` resolved (call it first)."""
    known = authenticated(request)
    if known is None:
        raise RuntimeError("authenticate(request) must run before the caller is asked for")
    return known.caller


def request_info(request: Request, *, with_size: bool = True) -> RequestInfo:
    """Client address, body size (Content-Length), X-Priority and X-Session-Id, as the pipeline takes them."""
    length = request.headers.get("content-length") or ""
    return RequestInfo(
        client_ip=request.client.host if request.client else None,
        request_bytes=int(length) if with_size and length.isdigit() else 0,
        priority=request.headers.get("x-priority", ""),
        session_id=request.headers.get("x-session-id") or None,
    )


def request_meta(request: Request) -> RequestMeta:
    """Fair-queue terms for a gateway call outside the metered pipeline (e.g. a new collection's probe).

    The party is the key's tenant (a key without a tenant is its own party), weighted by the tenant's
    ``weight``; priority is ``X-Priority`` (``low|normal|high`` or -100..100) plus the key's.
    """
    known = authenticated(request)
    if known is None:
        return RequestMeta(affinity_key=request.headers.get("x-session-id") or None)
    return fair_queue_meta(known.caller, request_info(request))


def pick_default_chat_model(context: AppContext) -> str:
    if context.default_chat_model and context.registry.candidates(context.default_chat_model):
        return context.default_chat_model
    for name in context.registry.model_names():
        backends = context.registry.candidates(name)
        if any("chat" in context.registry.adapter(b).capabilities for b in backends):
            return name
    raise APIError("no chat model is configured", status_code=503, code="no_backend_available")
