"""The dashboard's pages and form handlers (``/ui``).

Every page needs the ``inferhub_session`` cookie (the same JWT as ``POST /api/auth/login``); every
form carries a CSRF token that must match the ``inferhub_csrf`` cookie (double submit). Changes go
through the same services as the JSON admin API, with the logged-in user as the audit actor. A
tenant admin sees only their tenant: another tenant's pages answer 404.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from inferhub.api import inference
from inferhub.api.context import AppContext, context_of
from inferhub.api.principal import SESSION_COOKIE, Principal, admin_principal, issue_token
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import SSE_HEADERS, openai_sse
from inferhub.errors import APIError, NotFound, PermissionDenied
from inferhub.settings import BackendConfig
from inferhub.store.keys import LIMIT_NAMES
from inferhub.store.usage import month_bounds
from inferhub.ui import TEMPLATE_DIR
from inferhub.ui.live import LiveSeries

CSRF_COOKIE = "inferhub_csrf"
CSRF_FIELD = "csrf_token"
PLAYGROUND_KEY = "ui-playground"
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


class LoginRequired(Exception):
    pass


class UiRoute(APIRoute):
    """Errors become HTML pages (or a redirect to the login page) instead of the API's JSON bodies."""

    def get_route_handler(self) -> Callable:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            json = request.url.path.startswith(("/ui/api/", "/ui/playground/chat"))
            try:
                return await original(request)
            except LoginRequired:
                if json:
                    return ORJSONResponse({"error": {"message": "log in first", "code": "login_required"}}, 401)
                return RedirectResponse(f"/ui/login?next={quote(request.url.path)}", status_code=303)
            except APIError as exc:
                if exc.status_code == 401 and not json:
                    response = RedirectResponse("/ui/login", status_code=303)
                    response.delete_cookie(SESSION_COOKIE, path="/")
                    return response
                if json:
                    return ORJSONResponse(exc.openai_body(), status_code=exc.status_code)
                return templates.TemplateResponse(
                    request, "error.html", {"status": exc.status_code, "message": exc.message, "principal": None},
                    status_code=exc.status_code,
                )  # fmt: skip

        return handler


router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


# -- sessions, CSRF, rendering -----------------------------------------------------------------------


def _principal(request: Request) -> Principal:
    if not request.cookies.get(SESSION_COOKIE):
        raise LoginRequired()
    return admin_principal(request)


def _ctx(request: Request) -> AppContext:
    context = context_of(request)
    if context.admin is None or context.config is None:
        raise APIError("the dashboard needs the database", status_code=503, code="admin_unavailable")
    return context


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_csrf(request: Request, response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/ui")


async def _form(request: Request) -> dict[str, Any]:
    """The posted form, after checking its CSRF token against the cookie."""
    form = await request.form()
    _check_csrf(request, str(form.get(CSRF_FIELD) or ""))
    return {k: v for k, v in form.multi_items() if k != CSRF_FIELD} | {"_multi": form}


def _check_csrf(request: Request, sent: str) -> None:
    expected = request.cookies.get(CSRF_COOKIE) or ""
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise PermissionDenied("the form's CSRF token does not match this session; reload the page", code="csrf")


def render(request: Request, template: str, principal: Principal | None, status_code: int = 200, **values: Any):
    values.setdefault("flash", request.query_params.get("flash"))
    return templates.TemplateResponse(
        request, template,
        {"principal": principal, "csrf": request.cookies.get(CSRF_COOKIE, ""), "path": request.url.path, **values},
        status_code=status_code,
    )  # fmt: skip


def _back(url: str, flash: str | None = None) -> RedirectResponse:
    if flash:
        url, hash_, fragment = url.partition("#")
        url += ("&" if "?" in url else "?") + "flash=" + quote(flash) + hash_ + fragment
    return RedirectResponse(url, status_code=303)


def _int(value: Any) -> int | None:
    text = str(value or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def _limits(form: dict[str, Any]) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    for name in LIMIT_NAMES:
        raw = str(form.get(f"limit_{name}") or "").strip()
        if raw:
            try:
                value = float(raw) if name.endswith("_cost") else int(raw)
            except ValueError:
                raise APIError(f"{name}: expected a number, got {raw!r}", param=name) from None
            if value < 0:
                raise APIError(f"{name}: must not be negative", param=name)
            limits[name] = value
    return limits


def _csv(value: Any) -> list[str]:
    return [part.strip() for part in str(value or "").replace("\n", ",").split(",") if part.strip()]


# -- login, logout -------------------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request):
    token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)
    response = templates.TemplateResponse(
        request, "login.html", {"principal": None, "csrf": token, "next": request.query_params.get("next", ""),
                                "error": None})  # fmt: skip
    _set_csrf(request, response, token)
    return response


@router.post("/login")
async def login_submit(request: Request):
    context = _ctx(request)
    form = await _form(request)
    username, password = str(form.get("username") or ""), str(form.get("password") or "")
    user = await run_in_threadpool(context.admin.users.verify, username, password) if username and password else None
    if user is None:
        return templates.TemplateResponse(
            request,
            "login.html",
            {
                "principal": None,
                "csrf": request.cookies.get(CSRF_COOKIE, ""),
                "next": form.get("next", ""),
                "error": "Wrong username or password.",
            },
        )  # fmt: skip (200: the form again, with the message; a 4xx document logs a console error)
    token, expires_in = issue_token(context.signing_key, user_id=user.id, username=user.username, role=user.role,
                                    tenant_id=user.tenant_id, minutes=context.admin_token_minutes)  # fmt: skip
    target = str(form.get("next") or "")
    if not target.startswith("/ui") or target.startswith("/ui/login"):
        target = "/ui"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(SESSION_COOKIE, token, max_age=expires_in, httponly=True, samesite="strict",
                        secure=_secure(request), path="/")  # fmt: skip
    _set_csrf(request, response, secrets.token_urlsafe(32))  # a fresh token for the new session
    return response


@router.post("/logout")
async def logout(request: Request):
    await _form(request)
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/ui")
    return response


# -- overview ------------------------------------------------------------------------------------------


@router.get("")
@router.get("/")
async def home(request: Request):
    principal = _principal(request)
    if not principal.is_platform:
        return RedirectResponse(f"/ui/tenants/{principal.tenant_id}", status_code=303)
    context = _ctx(request)
    return render(request, "overview.html", principal, fleet=_fleet(context), queue=_queue(context),
                  jobs=await run_in_threadpool(context.jobs.counts) if context.jobs else {})  # fmt: skip


def _fleet(context: AppContext) -> list[dict[str, Any]]:
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
    principal = _principal(request)
    principal.require_platform()
    context = _ctx(request)
    return render(request, "_fleet.html", principal, fleet=_fleet(context), queue=_queue(context))


@router.get("/api/live")
async def live(request: Request):
    principal = _principal(request)
    principal.require_platform()
    context = _ctx(request)
    series: LiveSeries | None = getattr(request.app.state, "ui_live", None)
    if series is None:
        series = request.app.state.ui_live = LiveSeries()
    queue = _queue(context)
    series.sample(getattr(request.app.state, "metrics", None), queue["depth"])
    return ORJSONResponse({"points": series.public(), "queue": queue,
                           "in_flight": sum(r["live"].get("in_flight", 0) for r in _fleet(context))})  # fmt: skip


# -- backends ------------------------------------------------------------------------------------------


@router.get("/backends")
async def backends_page(request: Request):
    principal = _principal(request)
    principal.require_platform()
    context = _ctx(request)
    records = await run_in_threadpool(context.config.list_backends)
    routes = await run_in_threadpool(context.config.list_routes)
    aliases = await run_in_threadpool(context.config.list_aliases)
    audit = await run_in_threadpool(lambda: context.config.audit_log(limit=25))
    fleet = {row["id"]: row for row in _fleet(context)}
    rows = [{"record": r, "live": fleet.get(str(r.id), {})} for r in records]
    return render(request, "backends.html", principal, rows=rows, routes=[r.public() for r in routes],
                  aliases=aliases, audit=audit, local=[f for f in fleet.values()
                                                       if not f["id"].isdigit()])  # fmt: skip


@router.post("/backends")
async def backend_add(request: Request):
    principal = _principal(request)
    principal.require_platform()
    context = _ctx(request)
    form = await _form(request)
    url = str(form.get("endpoint_url") or "").strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise APIError("endpoint_url: must start with http:// or https://", param="endpoint_url")
    try:
        config = BackendConfig(
            model_name=str(form.get("model_name") or "").strip(), backend_type=form.get("backend_type") or "ollama",
            endpoint_url=url, upstream_model=str(form.get("upstream_model") or "").strip() or None,
            weight=_int(form.get("weight")) or 1, description=str(form.get("description") or ""),
        )  # fmt: skip
    except ValueError as exc:
        raise APIError(f"invalid backend: {exc}", code="invalid_value") from None
    try:
        await run_in_threadpool(context.config.add_backend, config, principal.actor)
    except IntegrityError:
        raise APIError(f"a backend for {config.model_name} at {url} already exists", status_code=409,
                       code="conflict") from None  # fmt: skip
    return _back("/ui/backends", f"Backend {config.model_name} added.")


_ACTIONS = {"enable": {"enabled": True, "draining": False}, "disable": {"enabled": False}, "drain": {"draining": True}}


@router.post("/backends/{backend_id}/{action}")
async def backend_action(request: Request, backend_id: int, action: str):
    principal = _principal(request)
    principal.require_platform()
    context = _ctx(request)
    await _form(request)
    if action == "delete":
        found = await run_in_threadpool(context.config.remove_backend, backend_id, principal.actor)
    elif action in _ACTIONS:
        found = await run_in_threadpool(context.config.update_backend, backend_id, dict(_ACTIONS[action]),
                                        principal.actor, action)  # fmt: skip
    else:
        raise NotFound(f"no action {action!r}")
    if not found:
        raise NotFound(f"no backend with id {backend_id}")
    return _back("/ui/backends", f"Backend {backend_id}: {action} done.")


# -- tenants and keys ----------------------------------------------------------------------------------


@router.get("/tenants")
async def tenants_page(request: Request):
    principal = _principal(request)
    if not principal.is_platform:
        return RedirectResponse(f"/ui/tenants/{principal.tenant_id}", status_code=303)
    context = _ctx(request)
    tenants = await run_in_threadpool(context.admin.tenants.list)
    return render(request, "tenants.html", principal, tenants=tenants, limit_names=LIMIT_NAMES)


@router.post("/tenants")
async def tenant_create(request: Request):
    principal = _principal(request)
    principal.require_platform()
    context = _ctx(request)
    form = await _form(request)
    name = str(form.get("name") or "").strip()
    if not name or not name[0].isalnum() or not all(c.isalnum() or c in "_.-" for c in name):
        raise APIError("name: letters, digits, '_', '.' and '-', starting with a letter or digit", param="name")
    try:
        tenant = await run_in_threadpool(lambda: context.admin.tenants.create(
            name, description=str(form.get("description") or ""), limits=_limits(form),
            store_payloads=bool(form.get("store_payloads")), actor=principal.actor))  # fmt: skip
    except IntegrityError:
        raise APIError(f"a tenant named {name!r} already exists", status_code=409, code="conflict") from None
    return _back(f"/ui/tenants/{tenant.id}", f"Tenant {name} created.")


async def _tenant(context: AppContext, principal: Principal, tenant_id: int):
    principal.require_tenant(tenant_id)
    tenant = await run_in_threadpool(context.admin.tenants.get, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant with id {tenant_id}")
    return tenant


async def _tenant_page(request: Request, principal: Principal, tenant_id: int, status_code: int = 200, **extra):
    context = _ctx(request)
    tenant = await _tenant(context, principal, tenant_id)
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
    return render(request, "tenant.html", principal, status_code=status_code, tenant=tenant,
                  keys=[k for k in keys if k.name != PLAYGROUND_KEY], budget=budget, used=used,
                  chart={"labels": [r["day"] for r in by_day], "requests": [r["requests"] for r in by_day],
                         "tokens": [r["prompt_tokens"] + r["completion_tokens"] for r in by_day]},
                  usage=by_day, jobs=jobs, collections=collections, limit_names=LIMIT_NAMES,
                  models=context.registry.model_names(), **extra)  # fmt: skip


@router.get("/tenants/{tenant_id}")
async def tenant_page(request: Request, tenant_id: int):
    return await _tenant_page(request, _principal(request), tenant_id)


@router.post("/tenants/{tenant_id}/keys")
async def key_create(request: Request, tenant_id: int):
    principal = _principal(request)
    context = _ctx(request)
    await _tenant(context, principal, tenant_id)
    form = await _form(request)
    name = str(form.get("name") or "").strip()
    if not name:
        raise APIError("name: required", param="name")
    scopes = [str(v) for v in form["_multi"].getlist("scopes")] or ["inference"]
    days = _int(form.get("expires_in_days"))
    expires_at = datetime.now(UTC) + timedelta(days=days) if days and days > 0 else None
    try:
        plaintext, record = await run_in_threadpool(lambda: context.admin.keys.create(
            name, tuple(scopes), expires_at=expires_at, tenant_id=tenant_id,
            allowed_models=tuple(_csv(form.get("allowed_models"))), limits=_limits(form),
            priority=max(-100, min(100, _int(form.get("priority")) or 0)), actor=principal.actor))  # fmt: skip
    except ValueError as exc:
        raise APIError(str(exc), code="invalid_value") from None
    return await _tenant_page(request, principal, tenant_id, new_key={"plaintext": plaintext, "record": record})


async def _key(context: AppContext, principal: Principal, key_id: int):
    record = await run_in_threadpool(context.admin.keys.get, key_id)
    if record is None or record.tenant_id is None or not principal.sees(record.tenant_id):
        raise NotFound(f"no key with id {key_id}")
    return record


@router.post("/keys/{key_id}/revoke")
async def key_revoke(request: Request, key_id: int):
    principal = _principal(request)
    context = _ctx(request)
    record = await _key(context, principal, key_id)
    await _form(request)
    await run_in_threadpool(lambda: context.admin.keys.revoke(str(key_id), actor=principal.actor))
    return _back(f"/ui/tenants/{record.tenant_id}", f"Key {record.prefix}… revoked.")


@router.post("/keys/{key_id}/rotate")
async def key_rotate(request: Request, key_id: int):
    principal = _principal(request)
    context = _ctx(request)
    old = await _key(context, principal, key_id)
    form = await _form(request)
    grace = max(0, min(90 * 86400, _int(form.get("grace_seconds")) or 86400))
    plaintext, record = await run_in_threadpool(lambda: context.admin.keys.create(
        f"{old.name} (rotated)", old.scopes, expires_at=old.expires_at, tenant_id=old.tenant_id,
        allowed_models=old.allowed_models, limits=dict(old.limits), priority=old.priority,
        actor=principal.actor))  # fmt: skip
    expires = datetime.now(UTC) + timedelta(seconds=grace)
    if old.expires_at is None or old.expires_at > expires:
        await run_in_threadpool(lambda: context.admin.keys.update(
            key_id, {"expires_at": expires}, actor=principal.actor, action="rotate"))  # fmt: skip
    return await _tenant_page(request, principal, old.tenant_id, new_key={"plaintext": plaintext, "record": record})


# -- usage and cost ------------------------------------------------------------------------------------


@router.get("/usage")
async def usage_page(request: Request):
    principal = _principal(request)
    context = _ctx(request)
    query = request.query_params
    group_by = query.get("group_by", "tenant")
    if group_by not in ("tenant", "model", "day", "key"):
        group_by = "tenant"
    tenant_id = principal.scope_tenant(_int(query.get("tenant_id")))
    days = max(1, min(366, _int(query.get("days")) or 30))
    now = datetime.now(UTC)
    begin = now - timedelta(days=days)
    rows = await run_in_threadpool(context.admin.usage.summarize, group_by, begin, now + timedelta(seconds=1),
                                   tenant_id)  # fmt: skip
    tenants = await run_in_threadpool(context.admin.tenants.list)
    tenants = [t for t in tenants if principal.sees(t.id)]
    names = {t.id: t.name for t in tenants}
    for row in rows:
        group = row[group_by]
        row["label"] = (names.get(group, "(no tenant)" if group is None else f"#{group}")
                        if group_by == "tenant" else str(group))  # fmt: skip
    statement = None
    month = query.get("month") or now.strftime("%Y-%m")
    statement_tenant = tenant_id if tenant_id is not None else _int(query.get("statement_tenant"))
    if statement_tenant is not None and principal.sees(statement_tenant):
        try:
            m_begin, m_end = month_bounds(month)
        except ValueError:
            raise APIError("month: expected YYYY-MM", param="month") from None
        lines = await run_in_threadpool(context.admin.usage.summarize, "model", m_begin, m_end, statement_tenant)
        statement = {"tenant": names.get(statement_tenant, f"#{statement_tenant}"), "month": month, "lines": lines,
                     "requests": sum(line["requests"] for line in lines),
                     "tokens": sum(line["prompt_tokens"] + line["completion_tokens"] for line in lines),
                     "cost": str(sum((Decimal(line["cost"]) for line in lines), Decimal(0)).quantize(
                         Decimal("0.000001")))}  # fmt: skip
    csv_query = f"group_by={group_by}&from={quote(begin.isoformat())}" + (
        f"&tenant_id={tenant_id}" if tenant_id is not None else "")  # fmt: skip
    return render(request, "usage.html", principal, rows=rows, group_by=group_by, days=days, tenant_id=tenant_id,
                  tenants=tenants, month=month, statement=statement, statement_tenant=statement_tenant,
                  csv_url=f"/ui/usage.csv?{csv_query}",
                  chart={"labels": [r["label"] for r in rows], "requests": [r["requests"] for r in rows],
                         "tokens": [r["prompt_tokens"] + r["completion_tokens"] for r in rows]})  # fmt: skip


@router.get("/usage.csv")
async def usage_csv(request: Request):
    """The same CSV as ``GET /api/usage?format=csv``, with the session cookie."""
    _principal(request)
    from inferhub.api.tenancy_routes import usage

    query = request.query_params
    return await usage(request, group_by=query.get("group_by", "tenant"), start=query.get("from"),
                       end=query.get("to"), tenant_id=_int(query.get("tenant_id")), format="csv")  # fmt: skip


# -- jobs and batches ----------------------------------------------------------------------------------


async def _visible_tenants(context: AppContext, principal: Principal, requested: int | None) -> list[int]:
    if not principal.is_platform:
        return [principal.scope_tenant(requested)]
    if requested is not None:
        return [requested]
    return [t.id for t in await run_in_threadpool(context.admin.tenants.list)]


@router.get("/jobs")
async def jobs_page(request: Request):
    principal = _principal(request)
    context = _ctx(request)
    status = request.query_params.get("status") or None
    if status not in (None, *JOB_STATUSES):
        status = None
    tenant_id = _int(request.query_params.get("tenant_id"))
    jobs: list[dict] = []
    batches: list[dict] = []
    for tid in await _visible_tenants(context, principal, tenant_id):
        if context.jobs is not None:
            jobs += await run_in_threadpool(lambda t=tid: context.jobs.list(tenant_id=t, key_id=None, status=status,
                                                                           limit=100, after=None))  # fmt: skip
        if context.batches is not None:
            batches += await run_in_threadpool(lambda t=tid: context.batches.list(tenant_id=t, key_id=0, limit=50,
                                                                                 after=None))  # fmt: skip
    jobs.sort(key=lambda j: j.get("created_at") or 0, reverse=True)
    if status:
        batches = [b for b in batches if b.get("status") == status]
    tenants = [t for t in await run_in_threadpool(context.admin.tenants.list) if principal.sees(t.id)]
    return render(request, "jobs.html", principal, jobs=jobs[:200], batches=batches, status=status,
                  statuses=JOB_STATUSES, tenants=tenants, tenant_id=tenant_id)  # fmt: skip


@router.post("/jobs/{job_id}/cancel")
async def job_cancel(request: Request, job_id: str):
    principal = _principal(request)
    context = _ctx(request)
    await _form(request)
    job = await run_in_threadpool(context.jobs.get, job_id)
    if job is None or not principal.sees(job.get("tenant_id")):
        raise NotFound(f"no job {job_id}")
    await run_in_threadpool(context.jobs.cancel, job_id)
    return _back("/ui/jobs", f"Job {job_id}: cancel requested.")


@router.post("/batches/{batch_id}/cancel")
async def batch_cancel(request: Request, batch_id: str):
    principal = _principal(request)
    context = _ctx(request)
    await _form(request)
    batch = await run_in_threadpool(context.batches.get, batch_id)
    if batch is None or not principal.sees(batch.get("tenant_id")):
        raise NotFound(f"no batch {batch_id}")
    await run_in_threadpool(context.batches.cancel, batch_id)
    return _back("/ui/jobs", f"Batch {batch_id}: cancel requested.")


# -- request log ---------------------------------------------------------------------------------------


@router.get("/requests")
async def requests_page(request: Request):
    principal = _principal(request)
    context = _ctx(request)
    query = request.query_params
    tenant_id = principal.scope_tenant(_int(query.get("tenant_id")))
    model = query.get("model") or None
    status = _int(query.get("status"))
    limit = max(1, min(500, _int(query.get("limit")) or 100))
    rows = await run_in_threadpool(lambda: context.admin.usage.request_log(
        tenant_id=tenant_id, key_id=_int(query.get("key_id")), model=model, status=status, start=None, end=None,
        limit=limit, before_id=None))  # fmt: skip
    if not principal.is_platform:
        rows = [r for r in rows if r["tenant_id"] == principal.tenant_id]
    tenants = [t for t in await run_in_threadpool(context.admin.tenants.list) if principal.sees(t.id)]
    return render(request, "requests.html", principal, rows=rows, tenants=tenants, tenant_id=tenant_id, model=model,
                  status=status, limit=limit)  # fmt: skip


# -- collections (tenant) ------------------------------------------------------------------------------


async def _playground_key(context: AppContext, principal: Principal, tenant_id: int):
    """The tenant's dashboard key: requests from the playground and the collections page are metered on it."""
    keys = await run_in_threadpool(context.admin.keys.list_for_tenant, tenant_id)
    for record in keys:
        if record.name == PLAYGROUND_KEY and record.active:
            return record
    _, record = await run_in_threadpool(lambda: context.admin.keys.create(
        PLAYGROUND_KEY, ("inference", "rag"), tenant_id=tenant_id, actor=principal.actor))  # fmt: skip
    return record


def _rag(context: AppContext):
    if context.rag is None or context.jobs is None:
        raise APIError("collections need the database", status_code=503, code="rag_unavailable")
    return context.rag


async def _collection(context: AppContext, tenant_id: int, name: str) -> dict[str, Any]:
    collection = await run_in_threadpool(
        lambda: _rag(context).store.get_collection(tenant_id=tenant_id, key_id=0, name=name)
    )
    if collection is None:
        raise NotFound(f"no collection named {name!r}")
    return collection


@router.post("/tenants/{tenant_id}/collections")
async def collection_create(request: Request, tenant_id: int):
    from inferhub.gateway.pipeline import RequestMeta

    principal = _principal(request)
    context = _ctx(request)
    await _tenant(context, principal, tenant_id)
    form = await _form(request)
    rag = _rag(context)
    name = str(form.get("name") or "").strip()
    if not name or "/" in name or len(name) > 200:
        raise APIError("name: a non-empty name without '/'", param="name")
    model = context.default_embedding_model
    if not model or not context.registry.candidates(model):
        raise APIError("no embedding model is configured", status_code=503, code="model_not_found")
    record = await _playground_key(context, principal, tenant_id)
    vectors, _ = await rag.embed(model, ["dimension probe"], RequestMeta(party=f"tenant:{tenant_id}"))
    try:
        await run_in_threadpool(lambda: rag.store.create_collection(
            tenant_id=tenant_id, key_id=record.id, name=name, description=str(form.get("description") or ""),
            embedding_model=model, dimensions=len(vectors[0]), chunk_size=256, chunk_overlap=32))  # fmt: skip
    except Exception as exc:
        if "uq_collections_owner_name" in str(exc):
            raise APIError(f"a collection named {name!r} exists", status_code=409, code="conflict") from None
        raise
    return _back(f"/ui/tenants/{tenant_id}#collections", f"Collection {name} created.")


@router.post("/tenants/{tenant_id}/collections/{name}/documents")
async def document_upload(request: Request, tenant_id: int, name: str):
    from inferhub.rag.extract import SUPPORTED, detect_mime

    principal = _principal(request)
    context = _ctx(request)
    await _tenant(context, principal, tenant_id)
    form = await _form(request)
    rag = _rag(context)
    collection = await _collection(context, tenant_id, name)
    upload = form.get("file")
    text = str(form.get("text") or "")
    if upload is not None and not isinstance(upload, str) and upload.filename:
        content, filename = await upload.read(), upload.filename
        mime = detect_mime(filename, upload.content_type, content)
    elif text.strip():
        content, filename, mime = text.encode(), None, "text/plain"
    else:
        raise APIError("attach a file or paste some text", param="file")
    if not content:
        raise APIError("the document is empty", param="file")
    if mime not in SUPPORTED:
        raise APIError(f"unsupported document type {mime}", status_code=415, code="unsupported_media_type")
    title = str(form.get("title") or filename or text.strip().splitlines()[0][:80])
    record = await _playground_key(context, principal, tenant_id)
    document, created = await run_in_threadpool(lambda: rag.store.add_document(
        collection["id"], title=title, content=content, mime=mime, filename=filename, source_url=None,
        metadata={}))  # fmt: skip
    if created:
        job, _ = await run_in_threadpool(lambda: context.jobs.submit(
            tenant_id=tenant_id, key_id=record.id, type="rag.ingest",
            body={"document_id": document["id"], "model": collection["embedding_model"]}, priority=0,
            webhook_url=None, metadata={"collection": name}, idempotency_key=None,
            max_attempts=context.job_max_attempts))  # fmt: skip
        await run_in_threadpool(rag.store.set_job, document["id"], job["id"])
    return _back(f"/ui/tenants/{tenant_id}#collections",
                 f"Document {title!r} {'queued for ingestion' if created else 'was already there'}.")  # fmt: skip


@router.get("/tenants/{tenant_id}/collections/{name}/search")
async def collection_search(request: Request, tenant_id: int, name: str):
    from inferhub.gateway.pipeline import RequestMeta

    principal = _principal(request)
    context = _ctx(request)
    await _tenant(context, principal, tenant_id)
    collection = await _collection(context, tenant_id, name)
    query = (request.query_params.get("q") or "").strip()
    hits = []
    if query:
        hits = await _rag(context).search([collection], query, top_k=5, mode="hybrid", filter=None,
                                          meta=RequestMeta(party=f"tenant:{tenant_id}"))  # fmt: skip
    return render(request, "_hits.html", principal, hits=hits, query=query)


# -- playground ----------------------------------------------------------------------------------------


@router.get("/playground")
async def playground_page(request: Request):
    principal = _principal(request)
    context = _ctx(request)
    tenants = [t for t in await run_in_threadpool(context.admin.tenants.list) if principal.sees(t.id)]
    collections: dict[int, list[str]] = {}
    if context.rag is not None:
        for tenant in tenants:
            rows = await run_in_threadpool(
                lambda t=tenant: context.rag.store.list_collections(tenant_id=t.id, key_id=0)
            )
            collections[tenant.id] = [r["name"] for r in rows]
    models = [
        m
        for m in context.registry.model_names()
        if any("chat" in context.registry.adapter(b).capabilities for b in context.registry.candidates(m))
    ]
    return render(request, "playground.html", principal, tenants=tenants, models=models,
                  default_model=context.default_chat_model, collections=collections,
                  selected=_int(request.query_params.get("tenant_id")))  # fmt: skip


@router.post("/playground/chat")
async def playground_chat(request: Request):
    """Stream a chat completion (OpenAI SSE) through the gateway pipeline, metered on the tenant."""
    principal = _principal(request)
    context = _ctx(request)
    _check_csrf(request, request.headers.get("x-csrf-token", ""))
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise APIError("the body must be JSON", code="invalid_json") from None
    tenant_id = principal.scope_tenant(_int(body.get("tenant_id")))
    if tenant_id is None:
        raise APIError("pick a tenant: playground requests are metered on one", param="tenant_id")
    await _tenant(context, principal, tenant_id)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError("messages: a non-empty list", param="messages")
    messages = [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in messages
                if isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")]  # fmt: skip
    model = str(body.get("model") or "")
    chat = {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    if isinstance(body.get("max_tokens"), int):
        chat["max_tokens"] = max(1, min(4096, body["max_tokens"]))
    request.state.key = await _playground_key(context, principal, tenant_id)
    hits: list = []
    collection = body.get("collection")
    if collection:
        from inferhub.gateway.pipeline import RequestMeta
        from inferhub.rag.service import build_messages, relevant

        found = await _collection(context, tenant_id, str(collection))
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        hits = relevant(await _rag(context).search([found], question, top_k=5, mode="hybrid", filter=None,
                                                   meta=RequestMeta(party=f"tenant:{tenant_id}")))  # fmt: skip
        if hits:
            chat["messages"] = [build_messages(question, hits)[0], *messages]
    opened, headers = await inference.open_stream(request, "chat", chat, endpoint="/v1/chat/completions")

    async def events() -> AsyncIterator[bytes]:
        async for piece in openai_sse(opened, include_usage=True):
            if hits and piece == b"data: [DONE]\n\n":
                from inferhub.rag.service import citations

                yield b"data: " + orjson.dumps({"object": "rag.citations", "citations": citations(hits)}) + b"\n\n"
            yield piece

    return StreamingResponse(events(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
