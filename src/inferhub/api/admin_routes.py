"""The registry's admin API: backends, model routes and aliases, and the configuration audit log.

Admin-scoped keys only. Changes are written to PostgreSQL (audited) and reach
every replica through NOTIFY; the list merges each backend's live state.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import ConfigDict, Field, field_validator

from inferhub.api._params import (
    INT_MAX,
    NAME_LENGTH,
    AdminBody,
    ModelPath,
    QueryBigId,
    QueryText,
    RowId,
    in_thread,
    no_nul,
)
from inferhub.api.context import AppContext, context_of
from inferhub.api.principal import admin_principal
from inferhub.api.responses import ORJSONResponse
from inferhub.api.schemas import URL_LENGTH, BackendPatch
from inferhub.errors import APIError, Conflict, NotFound
from inferhub.fleet.records import BackendRecord
from inferhub.settings import BackendConfig, ModelRouteConfig, Strategy, engine_root_url

router = APIRouter(prefix="/api", tags=["Admin: registry"])


class NewBackend(BackendConfig):
    """A backend added through the API: the config file's shape, held to what the columns can store."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    model_name: str = Field(min_length=1, max_length=NAME_LENGTH)
    endpoint_url: str = Field(max_length=URL_LENGTH)
    upstream_model: str | None = Field(default=None, max_length=NAME_LENGTH)
    max_tokens: int | None = Field(default=None, ge=1, le=INT_MAX)
    timeout_seconds: float = Field(default=120.0, gt=0, le=86400)
    priority: int = Field(default=0, ge=-INT_MAX, le=INT_MAX)
    max_concurrency: int | None = Field(default=None, ge=1, le=INT_MAX)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return no_nul(value)

    @field_validator("endpoint_url", mode="after")
    @classmethod
    def _engine_root(cls, url: str) -> str:
        return url  # as sent: create_backend normalizes it and says so


class RouteBody(AdminBody):
    strategy: Strategy = "least-busy"
    fallbacks: list[str] = Field(default_factory=list)


class AliasBody(AdminBody):
    model: str = Field(min_length=1, max_length=NAME_LENGTH)


def _admin(request: Request) -> tuple[AppContext, str]:
    principal = admin_principal(request)
    principal.require_platform()
    context = context_of(request)
    if context.config is None:
        raise APIError("the admin API needs the database", status_code=503, code="admin_unavailable")
    return context, principal.actor


def _live(context: AppContext, record: BackendRecord) -> dict[str, Any]:
    body = record.public()
    state = context.registry.states.get(str(record.id))
    if not record.enabled:
        health = "disabled"
    elif record.draining:
        health = "draining"
    elif state is None:
        health = "unknown"
    else:
        health = "healthy" if state.healthy and state.breaker.state.value != "open" else "unhealthy"
    body["health"] = health
    body["live"] = state.public() if state else None
    return body


def _check_url(url: str, notices: list[str]) -> str:
    if not url.startswith(("http://", "https://")):
        raise APIError(f"endpoint_url: must start with http:// or https://, got {url!r}", param="endpoint_url")
    root = engine_root_url(url)
    if root != url.rstrip("/"):
        notices.append(f"endpoint_url: stored as {root} (the engine's root, without /v1): Inferhub adds "
                       "/v1/... itself, so both forms work")  # fmt: skip
    return root


@router.get("/llm-backends")
async def list_backends(request: Request):
    context, _ = _admin(request)
    records = await in_thread(context.config.list_backends)
    return ORJSONResponse({"data": [_live(context, r) for r in records]})


@router.post("/llm-backends", status_code=201)
async def create_backend(request: Request, body: NewBackend):
    context, actor = _admin(request)
    notices: list[str] = []
    config = BackendConfig(**{**body.model_dump(), "endpoint_url": _check_url(body.endpoint_url, notices)})
    try:
        record = await in_thread(context.config.add_backend, config, actor)
    except Conflict:
        raise APIError(f"a backend for {body.model_name} at {body.endpoint_url} already exists",
                       status_code=409, code="conflict") from None  # fmt: skip
    return ORJSONResponse(_with_notices(_live(context, record), notices), status_code=201)


async def _get(context: AppContext, backend_id: int) -> BackendRecord:
    record = await in_thread(context.config.get_backend, backend_id)
    if record is None:
        raise NotFound(f"no backend with id {backend_id}", code="backend_not_found")
    return record


@router.get("/llm-backends/{backend_id}")
async def get_backend(request: Request, backend_id: RowId):
    context, _ = _admin(request)
    return ORJSONResponse(_live(context, await _get(context, backend_id)))


async def _update(request: Request, backend_id: int, changes: dict[str, Any], action: str):
    context, actor = _admin(request)
    notices: list[str] = []
    if "endpoint_url" in changes:
        changes["endpoint_url"] = _check_url(changes["endpoint_url"], notices)
    try:
        record = await in_thread(context.config.update_backend, backend_id, changes, actor, action)
    except Conflict:
        raise APIError("another backend already serves that model at that URL", status_code=409,
                       code="conflict") from None  # fmt: skip
    if record is None:
        raise NotFound(f"no backend with id {backend_id}", code="backend_not_found")
    return ORJSONResponse(_with_notices(_live(context, record), notices))


def _with_notices(body: dict[str, Any], notices: list[str]) -> dict[str, Any]:
    if notices:
        body["notices"] = notices
    return body


@router.patch("/llm-backends/{backend_id}")
async def patch_backend(request: Request, backend_id: RowId, body: BackendPatch):
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise APIError("nothing to change: send at least one field", code="empty_patch")
    return await _update(request, backend_id, changes, "update")


@router.post("/llm-backends/{backend_id}/enable")
async def enable_backend(request: Request, backend_id: RowId):
    return await _update(request, backend_id, {"enabled": True, "draining": False}, "enable")


@router.post("/llm-backends/{backend_id}/disable")
async def disable_backend(request: Request, backend_id: RowId):
    return await _update(request, backend_id, {"enabled": False}, "disable")


@router.post("/llm-backends/{backend_id}/drain")
async def drain_backend(request: Request, backend_id: RowId):
    """No new requests go to the backend; requests already on it finish."""
    return await _update(request, backend_id, {"draining": True}, "drain")


@router.delete("/llm-backends/{backend_id}", status_code=204)
async def delete_backend(request: Request, backend_id: RowId):
    context, actor = _admin(request)
    if not await in_thread(context.config.remove_backend, backend_id, actor):
        raise NotFound(f"no backend with id {backend_id}", code="backend_not_found")
    return Response(status_code=204)


@router.get("/model-routes")
async def list_routes(request: Request):
    context, _ = _admin(request)
    routes = await in_thread(context.config.list_routes)
    aliases = await in_thread(context.config.list_aliases)
    return ORJSONResponse({"data": [r.public() for r in routes], "aliases": aliases,
                           "default_strategy": context.registry.defaults.strategy})  # fmt: skip


@router.put("/model-routes/{model:path}")
async def put_route(request: Request, model: ModelPath, body: RouteBody):
    context, actor = _admin(request)
    route = await in_thread(
        context.config.set_route, model, ModelRouteConfig(strategy=body.strategy, fallbacks=body.fallbacks), actor
    )
    return ORJSONResponse(route.public())


@router.delete("/model-routes/{model:path}", status_code=204)
async def delete_route(request: Request, model: ModelPath):
    context, actor = _admin(request)
    if not await in_thread(context.config.delete_route, model, actor):
        raise NotFound(f"no route for model {model!r}")
    return Response(status_code=204)


@router.get("/model-aliases")
async def list_aliases(request: Request):
    context, _ = _admin(request)
    return ORJSONResponse({"data": await in_thread(context.config.list_aliases)})


@router.put("/model-aliases/{alias:path}")
async def put_alias(request: Request, alias: ModelPath, body: AliasBody):
    context, actor = _admin(request)
    await in_thread(context.config.set_alias, alias, body.model, actor)
    return ORJSONResponse({"alias": alias, "model": body.model})


@router.delete("/model-aliases/{alias:path}", status_code=204)
async def delete_alias(request: Request, alias: ModelPath):
    context, actor = _admin(request)
    if not await in_thread(context.config.delete_alias, alias, actor):
        raise NotFound(f"no alias {alias!r}")
    return Response(status_code=204)


@router.get("/audit-log")
async def audit_log(
    request: Request,
    entity_type: QueryText = None,
    entity_id: QueryText = None,
    actor: QueryText = None,
    limit: int = Query(default=100, ge=1, le=1000),
    before_id: QueryBigId = None,
):
    context, _ = _admin(request)
    rows = await in_thread(
        context.config.audit_log, entity_type=entity_type, entity_id=entity_id, actor=actor, limit=limit,
        before_id=before_id,
    )  # fmt: skip
    next_cursor = rows[-1]["id"] if len(rows) == limit else None
    return ORJSONResponse({"data": rows, "next_before_id": next_cursor})


@router.get("/queue")
async def queue(request: Request):
    context, _ = _admin(request)
    admission = context.gateway.admission
    return ORJSONResponse({
        "depth": admission.queue_depths(),
        "oldest_wait_seconds": admission.oldest_waits(),
        "waited_total": admission.total_waited,
        "timeouts_total": admission.total_timeouts,
        "retries_total": context.gateway.retries,
        "fallbacks_total": context.gateway.fallbacks,
    })  # fmt: skip
