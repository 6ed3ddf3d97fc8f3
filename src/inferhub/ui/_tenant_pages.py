"""Tenants and their API keys: create, edit (limits, budgets, scopes, model allow-lists), rotate, revoke.

A platform admin manages every tenant; a tenant admin sees their own tenant's page and manages its
keys, but the tenant's own settings (its limits and budgets) are the platform admin's to change, as in
the JSON API. Changes go through the same repositories as ``/api/tenants`` and ``/api/keys``, so
they are audited with the user as actor.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from inferhub.api.context import AppContext
from inferhub.api.principal import Principal
from inferhub.errors import Conflict, NotFound
from inferhub.tenancy.keys import ALL_SCOPES, LIMIT_NAMES
from inferhub.ui._usage_pages import usage_chart
from inferhub.ui.pages import (
    PLAYGROUND_KEY,
    FormError,
    audit_changes,
    back,
    context_for,
    limits_field,
    list_field,
    load_tenant,
    number_field,
    page_router,
    principal_of,
    read_form,
    render,
    submitted,
    text_field,
)

router = page_router()

# How long a rotated key keeps working, as offered by the rotate form (seconds, label).
GRACE_PERIODS = ((0, "no grace: stop now"), (3600, "1 hour"), (86400, "24 hours"), (7 * 86400, "7 days"))


def _number_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def _limit_values(limits: dict[str, Any]) -> dict[str, str]:
    """A limits mapping as the ``limit_*`` form fields."""
    return {f"limit_{name}": _number_text(value) for name, value in limits.items()}


def _minutes(moment: datetime | None) -> str:
    """A moment as a ``datetime-local`` field shows it (UTC, to the minute)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M") if moment else ""


def _tenant_name(form: dict[str, Any]) -> str:
    name = text_field(form, "name")
    if not name or len(name) > 200 or not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name):
        raise FormError("Name: letters, digits, '_', '.' and '-', starting with a letter or digit", "name")
    return name


# -- tenants -------------------------------------------------------------------------------------------


async def _tenants_page(request: Request, status_code: int = 200, **extra: Any):
    principal = principal_of(request)
    if not principal.is_platform:
        return RedirectResponse(f"/ui/tenants/{principal.tenant_id}", status_code=303)
    context = context_for(request)
    tenants = await run_in_threadpool(context.admin.tenants.list)
    extra.setdefault("values", {})
    return render(request, "tenants.html", principal, status_code=status_code, tenants=tenants,
                  limit_names=LIMIT_NAMES, **extra)  # fmt: skip


@router.get("/tenants")
async def tenants_page(request: Request):
    return await _tenants_page(request)


@router.post("/tenants")
async def tenant_create(request: Request):
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    form = await read_form(request)
    try:
        name, limits = _tenant_name(form), limits_field(form)
        try:
            tenant = await run_in_threadpool(lambda: context.admin.tenants.create(
                name, description=text_field(form, "description"), limits=limits,
                store_payloads=bool(form.get("store_payloads")), actor=principal.actor))  # fmt: skip
        except Conflict:
            raise FormError(f"A tenant named {name} already exists.", "name") from None
    except FormError as exc:
        return await _tenants_page(request, 422, error=exc.message, values=submitted(form))
    return back(f"/ui/tenants/{tenant.id}", f"Tenant {name} created.")


async def tenant_page_with(request: Request, tenant_id: int, status_code: int = 200, **extra: Any):
    """The tenant's page; ``extra`` adds a new key to show once, or a form's error and values."""
    principal = principal_of(request)
    context = context_for(request)
    tenant = await load_tenant(context, principal, tenant_id)
    keys = await run_in_threadpool(context.admin.keys.list_for_tenant, tenant_id)
    used: dict[str, Any] = {}
    if context.meter is not None:
        from inferhub.gateway.limits import Scope

        used = await context.meter.limiter.used(Scope("tenant", tenant_id, {}))
    budget = []
    for name in [*tenant.limits, *(n for n in used if n not in tenant.limits)]:  # limits, then unlimited budgets
        limit, spent = tenant.limits.get(name), used.get(name)
        known = isinstance(spent, int | float) and limit is not None
        budget.append({"name": name, "limit": limit, "used": spent, "remaining": limit - spent if known else None})
    now = datetime.now(UTC)
    by_day = await run_in_threadpool(context.admin.usage.summarize, "day", now - timedelta(days=30), now, tenant_id)
    jobs = await run_in_threadpool(lambda: context.jobs.list(tenant_id=tenant_id, key_id=None, status=None, limit=20,
                                                             after=None)) if context.jobs else []  # fmt: skip
    collections = []
    if context.rag is not None:
        collections = await run_in_threadpool(lambda: context.rag.store.list_collections(tenant_id=tenant_id, key_id=0))
        for collection in collections:
            collection["documents"] = await run_in_threadpool(
                lambda c=collection: context.rag.store.list_documents(c["id"], limit=20)
            )
    extra.setdefault("values", {"description": tenant.description, "store_payloads": tenant.store_payloads}
                     | _limit_values(tenant.limits))  # fmt: skip
    extra.setdefault("key_values", {"scopes": ["inference"]})
    return render(request, "tenant.html", principal, status_code=status_code, tenant=tenant,
                  keys=[k for k in keys if k.name != PLAYGROUND_KEY], budget=budget, used=used,
                  chart=usage_chart(by_day, "day"),
                  usage=by_day, jobs=jobs, collections=collections, limit_names=LIMIT_NAMES, scopes=ALL_SCOPES,
                  models=context.registry.model_names(), **extra)  # fmt: skip


@router.get("/tenants/{tenant_id}")
async def tenant_page(request: Request, tenant_id: int):
    return await tenant_page_with(request, tenant_id)


@router.post("/tenants/{tenant_id}")
async def tenant_edit(request: Request, tenant_id: int):
    """Description, payload storage, limits and budgets (platform admins only, like ``PATCH /api/tenants``)."""
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    tenant = await load_tenant(context, principal, tenant_id)
    form = await read_form(request)
    try:
        changes = {"description": text_field(form, "description"), "limits": limits_field(form),
                   "store_payloads": bool(form.get("store_payloads"))}  # fmt: skip
    except FormError as exc:
        values = submitted(form) | {"store_payloads": bool(form.get("store_payloads"))}
        return await tenant_page_with(request, tenant_id, 422, tenant_error=exc.message, values=values)
    await run_in_threadpool(lambda: context.admin.tenants.update(tenant_id, changes, actor=principal.actor))
    return back(f"/ui/tenants/{tenant_id}", f"Tenant {tenant.name} saved.")


# -- keys ----------------------------------------------------------------------------------------------


def _scopes(form: dict[str, Any]) -> list[str]:
    scopes = [str(v) for v in form["_multi"].getlist("scopes")]
    unknown = [s for s in scopes if s not in ALL_SCOPES]
    if unknown:
        raise FormError(f"Scopes: unknown {', '.join(unknown)}", "scopes")
    if not scopes:
        raise FormError("Scopes: pick at least one", "scopes")
    return scopes


def _priority(form: dict[str, Any]) -> int:
    return number_field(form, "priority", "Priority", minimum=-100, maximum=100) or 0


@router.post("/tenants/{tenant_id}/keys")
async def key_create(request: Request, tenant_id: int):
    principal = principal_of(request)
    context = context_for(request)
    await load_tenant(context, principal, tenant_id)
    form = await read_form(request)
    try:
        name = text_field(form, "name")
        if not name or len(name) > 200:
            raise FormError("Name: required (at most 200 characters)", "name")
        if name == PLAYGROUND_KEY:
            raise FormError(f"Name: {PLAYGROUND_KEY} is the dashboard's own key", "name")
        scopes, limits, priority = _scopes(form), limits_field(form), _priority(form)
        days = number_field(form, "expires_in_days", "Expires in days", minimum=1, maximum=36500)
        expires_at = datetime.now(UTC) + timedelta(days=days) if days else None
        plaintext, record = await run_in_threadpool(lambda: context.admin.keys.create(
            name, tuple(scopes), expires_at=expires_at, tenant_id=tenant_id,
            allowed_models=tuple(list_field(form.get("allowed_models"))), limits=limits, priority=priority,
            actor=principal.actor))  # fmt: skip
    except FormError as exc:
        return await tenant_page_with(request, tenant_id, 422, key_error=exc.message, key_values=submitted(form))
    return await tenant_page_with(request, tenant_id, new_key={"plaintext": plaintext, "record": record})


async def _key(context: AppContext, principal: Principal, key_id: int):
    """A key this admin may manage: a tenant admin their tenant's, a platform admin every key (also those
    without a tenant, such as the bootstrap key); any other answers 404."""
    record = await run_in_threadpool(context.admin.keys.get, key_id)
    if record is None or not principal.sees(record.tenant_id):
        raise NotFound(f"no key with id {key_id}")
    return record


def _keys_home(tenant_id: int | None) -> str:
    return f"/ui/tenants/{tenant_id}" if tenant_id is not None else "/ui/keys"


async def platform_keys_page_with(request: Request, **extra: Any):
    """The keys without a tenant (platform keys); ``extra`` adds a rotated key to show once."""
    principal = principal_of(request)
    principal.require_platform()
    context = context_for(request)
    keys = await run_in_threadpool(context.admin.keys.list_for_tenant, None)
    return render(request, "platform_keys.html", principal, keys=[k for k in keys if k.name != PLAYGROUND_KEY],
                  **extra)  # fmt: skip


@router.get("/keys")
async def platform_keys_page(request: Request):
    return await platform_keys_page_with(request)


def _key_values(record) -> dict[str, Any]:
    return {"name": record.name, "scopes": list(record.scopes), "allowed_models": ", ".join(record.allowed_models),
            "priority": str(record.priority), "expires_at": _minutes(record.expires_at)
            } | _limit_values(record.limits)  # fmt: skip


async def _key_page(request: Request, key_id: int, status_code: int = 200, **extra: Any):
    principal = principal_of(request)
    context = context_for(request)
    record = await _key(context, principal, key_id)
    tenant = await load_tenant(context, principal, record.tenant_id) if record.tenant_id is not None else None
    audit = await run_in_threadpool(lambda: context.config.audit_log(entity_type="api_key", entity_id=str(key_id),
                                                                     limit=50))  # fmt: skip
    extra.setdefault("values", _key_values(record))
    return render(request, "key.html", principal, status_code=status_code, key=record, tenant=tenant,
                  scopes=ALL_SCOPES, limit_names=LIMIT_NAMES, grace_periods=GRACE_PERIODS,
                  audit=[e | {"changes": audit_changes(e)} for e in audit], **extra)  # fmt: skip


@router.get("/keys/{key_id}")
async def key_page(request: Request, key_id: int):
    return await _key_page(request, key_id)


def _expires_at(form: dict[str, Any]) -> datetime | None:
    raw = text_field(form, "expires_at")
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise FormError(f"Expires at: expected a date and time like 2030-01-31T18:00, got {raw!r}",
                        "expires_at") from None  # fmt: skip
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    if moment <= datetime.now(UTC):
        raise FormError("Expires at: must be in the future (revoke the key to stop it now)", "expires_at")
    return moment


@router.post("/keys/{key_id}")
async def key_edit(request: Request, key_id: int):
    """Name, scopes, model allow-list, limits, priority and expiry (``PATCH /api/keys/{id}``)."""
    principal = principal_of(request)
    context = context_for(request)
    record = await _key(context, principal, key_id)
    form = await read_form(request)
    try:
        name = text_field(form, "name")
        if not name or len(name) > 200:
            raise FormError("Name: required (at most 200 characters)", "name")
        changes = {"name": name, "scopes": _scopes(form), "allowed_models": list_field(form.get("allowed_models")),
                   "limits": limits_field(form), "priority": _priority(form)}  # fmt: skip
        if text_field(form, "expires_at") != _minutes(record.expires_at):  # unchanged: keep the stored moment
            changes["expires_at"] = _expires_at(form)
        try:
            await run_in_threadpool(lambda: context.admin.keys.update(key_id, changes, actor=principal.actor))
        except ValueError as exc:
            raise FormError(str(exc)) from None
    except FormError as exc:
        return await _key_page(request, key_id, 422, error=exc.message, error_field=exc.param, values=submitted(form))
    return back(f"/ui/keys/{key_id}", f"Key {name} saved.")


@router.post("/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: int):
    principal = principal_of(request)
    context = context_for(request)
    record = await _key(context, principal, key_id)
    await read_form(request)
    await run_in_threadpool(lambda: context.admin.keys.revoke(str(key_id), actor=principal.actor))
    return back(_keys_home(record.tenant_id), f"Key {record.prefix}… revoked.")


@router.post("/keys/{key_id}/rotate")
async def key_rotate(request: Request, key_id: int):
    """A new key with the same settings, shown once; the old one works for the grace period, then expires."""
    principal = principal_of(request)
    context = context_for(request)
    old = await _key(context, principal, key_id)
    form = await read_form(request)
    grace = number_field(form, "grace_seconds", "Grace period", minimum=0, maximum=90 * 86400)
    grace = 86400 if grace is None else grace
    plaintext, record = await run_in_threadpool(lambda: context.admin.keys.create(
        f"{old.name} (rotated)", old.scopes, expires_at=old.expires_at, tenant_id=old.tenant_id,
        allowed_models=old.allowed_models, limits=dict(old.limits), priority=old.priority,
        actor=principal.actor))  # fmt: skip
    expires = datetime.now(UTC) + timedelta(seconds=grace)
    if old.expires_at is None or old.expires_at > expires:
        await run_in_threadpool(lambda: context.admin.keys.update(
            key_id, {"expires_at": expires}, actor=principal.actor, action="rotate"))  # fmt: skip
    else:
        expires = old.expires_at
    new_key = {"plaintext": plaintext, "record": record, "replaces": old, "old_expires": expires}
    if old.tenant_id is None:
        return await platform_keys_page_with(request, new_key=new_key)
    return await tenant_page_with(request, old.tenant_id, new_key=new_key)
