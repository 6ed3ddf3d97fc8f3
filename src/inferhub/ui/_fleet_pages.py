"""The platform admin's fleet: the overview with live charts, backends, model aliases and routes.

Every change goes through :class:`ConfigService` (as the admin API's does), so it is validated the
same way, written to ``config_audit_log`` with the user as actor, and reaches every replica.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from inferhub.api.context import AppContext
from inferhub.api.responses import ORJSONResponse
from inferhub.api.schemas import BackendPatch
from inferhub.errors import Conflict, NotFound
from inferhub.settings import STRATEGIES, BackendConfig, ModelRouteConfig, engine_root_url
from inferhub.ui.live import LiveSeries
from inferhub.ui.pages import (
    FormError,
    audit_changes,
    back,
    context_for,
    list_field,
    number_field,
    page_router,
    principal_of,
    read_form,
    render,
    submitted,
    text_field,
)

router = page_router()

BACKEND_TYPES = ("ollama", "vllm", "openai", "llamacpp", "tei", "mlx")


# -- overview ------------------------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def home(request: Request):
    principal = principal_of(request)
    if not principal.is_platform:
        return RedirectResponse(f"/ui/tenants/{principal.tenant_id}", status_code=303)
    context = context_for(request)
    return render(request, "overview.html", principal, fleet=fleet(context), queue=_queue(context),
                  jobs=await run_in_threadpool(context.jobs.counts) if context.jobs else {})  # fmt: skip


def fleet(context: AppContext) -> list[dict[str, Any]]:
    """Every backend in the registry (stored and embedded) with its live state."""
    registry = context.registry
    rows = []
    for backend in registry.backends:
        state = registry.states.get(backend.id)
        live = state.public() if state else {}
        if not backend.enabled:
            health = "disabled"
        elif backend.draining:
            health = "draining"
        elif state is None:
            health = "unknown"
        else:
            health = "healthy" if registry.usable(backend) else "unhealthy"
        stats = getattr(context.gateway.stats, "live", {}).get(backend.id)
        rows.append({"id": backend.id, "model": backend.model_name, "type": backend.backend_type,
                     "url": backend.endpoint_url, "health": health, "live": live,
                     "stats": stats.public() if stats else None})  # fmt: skip
    return rows


def _queue(context: AppContext) -> dict[str, Any]:
    admission = context.gateway.admission
    depths = admission.queue_depths()
    return {"depth": sum(depths.values()), "by_model": depths, "timeouts": admission.total_timeouts}


@router.get("/partials/fleet")
async def fleet_partial(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    return render(request, "_fleet.html", principal, fleet=fleet(context), queue=_queue(context))


@router.get("/api/live")
async def live(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    series: LiveSeries | None = getattr(request.app.state, "ui_live", None)
    if series is None:
        series = request.app.state.ui_live = LiveSeries()
    queue = _queue(context)
    series.sample(getattr(request.app.state, "metrics", None), queue["depth"])
    return ORJSONResponse({"points": series.public(), "queue": queue,
                           "in_flight": sum(r["live"].get("in_flight", 0) for r in fleet(context))})  # fmt: skip


# -- backends ------------------------------------------------------------------------------------------


async def _audit(context: AppContext, **filters: Any) -> list[dict[str, Any]]:
    entries = await run_in_threadpool(lambda: context.config.audit_log(**filters))
    return [entry | {"changes": audit_changes(entry)} for entry in entries]


async def _backends_page(request: Request, status_code: int = 200, **extra: Any):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    records = await run_in_threadpool(context.config.list_backends)
    routes = await run_in_threadpool(context.config.list_routes)
    aliases = await run_in_threadpool(context.config.list_aliases)
    live = {row["id"]: row for row in fleet(context)}
    rows = [{"record": r, "live": live.get(str(r.id), {})} for r in records]
    models = sorted({r.model_name for r in records} | {b["model"] for b in live.values()})
    extra.setdefault("values", {})
    return render(request, "backends.html", principal, status_code=status_code, rows=rows,
                  routes=[r.public() for r in routes], aliases=aliases, audit=await _audit(context, limit=25),
                  local=[f for f in live.values() if not f["id"].isdigit()], models=models,
                  strategies=STRATEGIES, default_strategy=context.registry.defaults.strategy,
                  backend_types=BACKEND_TYPES, **extra)  # fmt: skip


@router.get("/backends")
async def backends_page(request: Request):
    return await _backends_page(request)


def _endpoint_url(form: dict[str, Any]) -> str:
    url = text_field(form, "endpoint_url", "Endpoint URL", 500).rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url) < len("http://x"):
        raise FormError("Endpoint URL: must start with http:// or https://", "endpoint_url")
    return engine_root_url(url)  # http://host:8000/v1 is stored as http://host:8000


@router.post("/backends")
async def backend_add(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    try:
        model_name = text_field(form, "model_name", "Model name")
        if not model_name:
            raise FormError("Model name: required", "model_name")
        backend_type = text_field(form, "backend_type") or "ollama"
        if backend_type not in BACKEND_TYPES:
            raise FormError(f"Type: one of {', '.join(BACKEND_TYPES)}", "backend_type")
        config = BackendConfig(
            model_name=model_name, backend_type=backend_type, endpoint_url=_endpoint_url(form),
            upstream_model=text_field(form, "upstream_model", "Upstream model") or None,
            weight=number_field(form, "weight", "Weight", minimum=1, maximum=1000) or 1,
            description=text_field(form, "description"),
        )  # fmt: skip
        try:
            await run_in_threadpool(context.config.add_backend, config, principal.actor)
        except Conflict:
            raise FormError(f"A backend for {config.model_name} at {config.endpoint_url} already exists.") from None
    except FormError as exc:
        return await _backends_page(request, 422, add_error=exc.message, values=submitted(form))
    return back("/ui/backends", f"Backend {config.model_name} added.")


async def _backend(context: AppContext, backend_id: int):
    record = await run_in_threadpool(context.config.get_backend, backend_id)
    if record is None:
        raise NotFound(f"no backend with id {backend_id}")
    return record


async def _backend_page(request: Request, backend_id: int, status_code: int = 200, **extra: Any):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    record = await _backend(context, backend_id)
    live = next((row for row in fleet(context) if row["id"] == str(backend_id)), {})
    values = extra.pop("values", None) or {
        name: "" if getattr(record, name) is None else str(getattr(record, name)) for name in _EDITED
    }
    return render(request, "backend.html", principal, status_code=status_code, record=record, live=live,
                  values=values, audit=await _audit(context, entity_type="backend", entity_id=str(backend_id),
                                                    limit=50), **extra)  # fmt: skip


@router.get("/backends/{backend_id}")
async def backend_page(request: Request, backend_id: int):
    return await _backend_page(request, backend_id)


# The fields of the edit form, in its order: what an operator tunes on a running backend.
_EDITED = ("endpoint_url", "upstream_model", "weight", "priority", "max_concurrency", "timeout_seconds", "max_tokens",
           "temperature_default", "description")  # fmt: skip


def _backend_changes(form: dict[str, Any]) -> dict[str, Any]:
    timeout = number_field(form, "timeout_seconds", "Timeout", kind=float, minimum=0, maximum=3600, required=True)
    if timeout <= 0:
        raise FormError("Timeout: must be more than 0 seconds", "timeout_seconds")
    values = {
        "endpoint_url": _endpoint_url(form),
        "upstream_model": text_field(form, "upstream_model", "Upstream model") or None,
        "weight": number_field(form, "weight", "Weight", minimum=1, maximum=1000, required=True),
        "priority": number_field(form, "priority", "Priority", minimum=-1000, maximum=1000) or 0,
        "max_concurrency": number_field(form, "max_concurrency", "Max concurrency", minimum=1, maximum=100000),
        "timeout_seconds": timeout,
        "max_tokens": number_field(form, "max_tokens", "Max tokens", minimum=1, maximum=10_000_000),
        "temperature_default": number_field(form, "temperature_default", "Default temperature", kind=float,
                                            minimum=0, maximum=2),
        "description": text_field(form, "description"),
    }  # fmt: skip
    try:  # the admin API's own rules, so both doors accept the same values
        BackendPatch.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise FormError(f"{error['loc'][0]}: {error['msg']}", str(error["loc"][0])) from None
    return values


@router.post("/backends/{backend_id}")
async def backend_edit(request: Request, backend_id: int):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    record = await _backend(context, backend_id)
    try:
        values = _backend_changes(form)
        changes = {name: value for name, value in values.items() if getattr(record, name) != value}
        if not changes:
            return back(f"/ui/backends/{backend_id}", "Nothing changed.")
        try:
            updated = await run_in_threadpool(context.config.update_backend, backend_id, changes, principal.actor,
                                              "update")  # fmt: skip
        except Conflict:
            url = changes.get("endpoint_url", record.endpoint_url)
            raise FormError(f"Another backend already serves {record.model_name} at {url}.", "endpoint_url") from None
    except FormError as exc:
        return await _backend_page(request, backend_id, 422, error=exc.message, error_field=exc.param,
                                   values=submitted(form))  # fmt: skip
    if updated is None:
        raise NotFound(f"no backend with id {backend_id}")
    return back(f"/ui/backends/{backend_id}", f"Backend {backend_id} saved: {', '.join(sorted(changes))} changed.")


_ACTIONS = {"enable": {"enabled": True, "draining": False}, "disable": {"enabled": False}, "drain": {"draining": True}}


@router.post("/backends/{backend_id}/{action}")
async def backend_action(request: Request, backend_id: int, action: str):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    await read_form(request)
    if action == "delete":
        found = await run_in_threadpool(context.config.remove_backend, backend_id, principal.actor)
    elif action in _ACTIONS:
        found = await run_in_threadpool(context.config.update_backend, backend_id, dict(_ACTIONS[action]),
                                        principal.actor, action)  # fmt: skip
    else:
        raise NotFound(f"no action {action!r}")
    if not found:
        raise NotFound(f"no backend with id {backend_id}")
    return back("/ui/backends", f"Backend {backend_id}: {action} done.")


# -- aliases and routes --------------------------------------------------------------------------------


def _served(context: AppContext, records: list) -> set[str]:
    """Model names some backend (stored or embedded) serves."""
    return {r.model_name for r in records} | {b.model_name for b in context.registry.backends}


@router.post("/aliases")
async def alias_set(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    try:
        alias, model = text_field(form, "alias", "Alias"), text_field(form, "model")
        if not alias or any(c.isspace() for c in alias):
            raise FormError("Alias: a name without spaces", "alias")
        served = _served(context, await run_in_threadpool(context.config.list_backends))
        aliases = await run_in_threadpool(context.config.list_aliases)
        if alias in served:
            raise FormError(f"Alias: {alias} is a model a backend serves; an alias of that name would hide it",
                            "alias")  # fmt: skip
        if model not in served:
            known = f"{model} is an alias" if model in aliases else f"no backend serves {model or 'that'}"
            raise FormError(f"Model: {known}; pick a served model", "model")
        await run_in_threadpool(context.config.set_alias, alias, model, principal.actor)
    except FormError as exc:
        return await _backends_page(request, 422, alias_error=exc.message, values=submitted(form))
    return back("/ui/backends#routes-h", f"Alias {alias} → {model} saved.")


@router.post("/aliases/delete")
async def alias_delete(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    alias = text_field(form, "alias")
    if not await run_in_threadpool(context.config.delete_alias, alias, principal.actor):
        raise NotFound(f"no alias {alias!r}")
    return back("/ui/backends#routes-h", f"Alias {alias} removed.")


@router.post("/routes")
async def route_set(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    model, strategy = text_field(form, "model"), text_field(form, "strategy")
    fallbacks = list_field(form.get("fallbacks"))
    try:
        served = _served(context, await run_in_threadpool(context.config.list_backends))
        aliases = await run_in_threadpool(context.config.list_aliases)
        if model not in served:
            raise FormError(f"Model: no backend serves {model or 'that'}", "model")
        if strategy not in STRATEGIES:
            raise FormError(f"Strategy: one of {', '.join(STRATEGIES)}", "strategy")
        unknown = [name for name in fallbacks if name not in served and name not in aliases]
        if unknown:
            raise FormError(f"Fallbacks: no backend or alias for {', '.join(unknown)}", "fallbacks")
        if any(aliases.get(name, name) == model for name in fallbacks):
            raise FormError(f"Fallbacks: {model} cannot fall back to itself", "fallbacks")
        if len(set(fallbacks)) != len(fallbacks):
            raise FormError("Fallbacks: each model once", "fallbacks")
        config = ModelRouteConfig(strategy=strategy, fallbacks=fallbacks)
        await run_in_threadpool(context.config.set_route, model, config, principal.actor)
    except FormError as exc:
        return await _backends_page(request, 422, route_error=exc.message, values=submitted(form))
    chain = " → ".join([model, *fallbacks])
    return back("/ui/backends#routes-h", f"Route for {model} saved ({strategy}; {chain}).")


@router.post("/routes/delete")
async def route_delete(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    model = text_field(form, "model")
    if not await run_in_threadpool(context.config.delete_route, model, principal.actor):
        raise NotFound(f"no route for {model!r}")
    return back("/ui/backends#routes-h", f"Route for {model} removed: it uses the default strategy.")
