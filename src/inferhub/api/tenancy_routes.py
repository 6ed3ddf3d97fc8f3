"""Tenancy admin API: login, tenants, keys, admin users, prices, usage, statements, request log.

Platform admins see everything; a tenant admin sees only their own tenant, and
another tenant's resources answer 404 as if they did not exist. Every change is
written to ``config_audit_log``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from inferhub.api._params import (
    COST_MAX,
    COUNT_MAX,
    INT_MAX,
    NAME_LENGTH,
    AdminBody,
    ModelPath,
    Moment,
    QueryBigId,
    QueryId,
    QueryStatus,
    QueryText,
    RowId,
    Text,
    in_thread,
    query_moment,
)
from inferhub.api.context import AppContext, context_of
from inferhub.api.principal import SESSION_COOKIE, Principal, admin_principal, issue_token
from inferhub.api.responses import ORJSONResponse
from inferhub.api.usage_report import usage_report
from inferhub.errors import APIError, AuthenticationFailed, Conflict, InvalidRequest, NotFound
from inferhub.tenancy.keys import MAX_WEIGHT
from inferhub.tenancy.usage import month_bounds

router = APIRouter(prefix="/api", tags=["Admin: tenants, keys, usage"])


class Limits(AdminBody):
    rpm: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    tpm: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    concurrency: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    daily_tokens: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    monthly_tokens: int | None = Field(default=None, ge=0, le=COUNT_MAX)
    daily_cost: float | None = Field(default=None, ge=0, le=COST_MAX)
    monthly_cost: float | None = Field(default=None, ge=0, le=COST_MAX)
    weight: int | None = Field(default=None, ge=1, le=MAX_WEIGHT)  # fair-queue share, not a limit

    def stored(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class Login(BaseModel):
    username: Text = Field(min_length=1, max_length=NAME_LENGTH)
    password: str = Field(min_length=1, repr=False)


class NewTenant(AdminBody):
    name: str = Field(min_length=1, max_length=NAME_LENGTH, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    limits: Limits = Field(default_factory=Limits)
    store_payloads: bool = False


# In the PATCH bodies below, ``null`` clears a field that may be empty (limits, an expiry); a field that
# cannot be empty is typed without ``None`` and defaults to None only to mean "not sent": null is a 400.


class TenantPatch(AdminBody):
    description: str = Field(default=None)
    limits: Limits | None = None
    store_payloads: bool = Field(default=None)


class NewKey(AdminBody):
    name: str = Field(min_length=1, max_length=NAME_LENGTH)
    scopes: list[str] = Field(default_factory=lambda: ["inference"])
    allowed_models: list[str] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    expires_at: Moment | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=36500)
    priority: int = Field(default=0, ge=-100, le=100)


class KeyPatch(AdminBody):
    name: str = Field(default=None, min_length=1, max_length=NAME_LENGTH)
    scopes: list[str] = Field(default=None)
    allowed_models: list[str] = Field(default=None)
    limits: Limits | None = None
    expires_at: Moment | None = None
    priority: int = Field(default=None, ge=-100, le=100)


class Rotation(AdminBody):
    grace_seconds: int = Field(default=86400, ge=0, le=90 * 86400)


class NewUser(AdminBody):
    username: str = Field(min_length=1, max_length=NAME_LENGTH)
    password: str = Field(min_length=12, repr=False)
    role: str = Field(default="tenant_admin", max_length=30)
    tenant_id: int | None = Field(default=None, ge=1, le=INT_MAX)


class UserPatch(AdminBody):
    password: str = Field(default=None, min_length=12, repr=False)
    disabled: bool = Field(default=None)


class PriceBody(AdminBody):
    prompt_per_million: Decimal = Field(ge=0, lt=10**12)  # the column is numeric(18, 6)
    completion_per_million: Decimal = Field(ge=0, lt=10**12)


def _ctx(request: Request) -> tuple[AppContext, Principal]:
    context = context_of(request)
    if context.admin is None:
        raise APIError("the admin API needs the database", status_code=503, code="admin_unavailable")
    return context, admin_principal(request)


def _value_error(exc: ValueError) -> InvalidRequest:
    return InvalidRequest(str(exc), code="invalid_value")


# -- login ------------------------------------------------------------------------------------------


@router.post("/auth/login")
async def login(request: Request, body: Login):
    """Exchange an admin user's password for a short-lived JWT (also set as an HttpOnly cookie)."""
    context = context_of(request)
    if context.admin is None:
        raise APIError("the admin API needs the database", status_code=503, code="admin_unavailable")
    user = await in_thread(context.admin.users.verify, body.username, body.password)
    if user is None:
        raise AuthenticationFailed("wrong username or password", code="invalid_credentials")
    if context.admin_users is not None and context.admin_users.by_id(user.id) is None:
        context.admin_users.put(user)  # created on another replica a moment ago: do not wait for its NOTIFY
    token, expires_in = issue_token(context.signing_key, user_id=user.id, username=user.username, role=user.role,
                                    tenant_id=user.tenant_id, minutes=context.admin_token_minutes)  # fmt: skip
    response = ORJSONResponse({"access_token": token, "token_type": "bearer", "expires_in": expires_in,
                               "user": user.public()})  # fmt: skip
    response.set_cookie(SESSION_COOKIE, token, max_age=expires_in, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")  # fmt: skip
    return response


@router.get("/auth/me")
async def me(request: Request):
    principal = admin_principal(request)
    return ORJSONResponse({"actor": principal.actor, "role": principal.role, "tenant_id": principal.tenant_id})


# -- tenants ----------------------------------------------------------------------------------------


@router.get("/tenants")
async def list_tenants(request: Request):
    context, principal = _ctx(request)
    tenants = await in_thread(context.admin.tenants.list)
    visible = [t.public() for t in tenants if principal.is_platform or t.id == principal.tenant_id]
    return ORJSONResponse({"data": visible})


@router.post("/tenants", status_code=201)
async def create_tenant(request: Request, body: NewTenant):
    context, principal = _ctx(request)
    principal.require_platform()
    try:
        tenant = await in_thread(lambda: context.admin.tenants.create(
            body.name, description=body.description, limits=body.limits.stored(),
            store_payloads=body.store_payloads, actor=principal.actor))  # fmt: skip
    except Conflict:
        raise APIError(f"a tenant named {body.name!r} already exists", status_code=409, code="conflict") from None
    return ORJSONResponse(tenant.public(), status_code=201)


async def _tenant(context: AppContext, principal: Principal, tenant_id: int):
    principal.require_tenant(tenant_id)
    tenant = await in_thread(context.admin.tenants.get, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant with id {tenant_id}")
    return tenant


@router.get("/tenants/{tenant_id}")
async def get_tenant(request: Request, tenant_id: RowId):
    context, principal = _ctx(request)
    tenant = await _tenant(context, principal, tenant_id)
    body = tenant.public()
    if context.meter is not None:
        from inferhub.gateway.limits import Scope

        body["budget_used"] = await context.meter.limiter.used(Scope("tenant", tenant_id, {}))
    return ORJSONResponse(body)


@router.patch("/tenants/{tenant_id}")
async def patch_tenant(request: Request, tenant_id: RowId, body: TenantPatch):
    context, principal = _ctx(request)
    principal.require_platform()
    changes = body.model_dump(exclude_unset=True)
    if "limits" in changes:
        changes["limits"] = body.limits.stored() if body.limits else {}
    tenant = await in_thread(lambda: context.admin.tenants.update(tenant_id, changes, actor=principal.actor))
    if tenant is None:
        raise NotFound(f"no tenant with id {tenant_id}")
    return ORJSONResponse(tenant.public())


@router.delete("/tenants/{tenant_id}", status_code=204)
async def delete_tenant(request: Request, tenant_id: RowId):
    context, principal = _ctx(request)
    principal.require_platform()
    if not await in_thread(lambda: context.admin.tenants.delete(tenant_id, actor=principal.actor)):
        raise NotFound(f"no tenant with id {tenant_id}")
    context.keys.drop_where(lambda key: key.tenant_id == tenant_id)  # gone with it; NOTIFY tells the others
    if context.admin_users is not None:
        context.admin_users.drop_where(lambda user: user.tenant_id == tenant_id)
    return Response(status_code=204)


# -- keys -------------------------------------------------------------------------------------------


@router.get("/tenants/{tenant_id}/keys")
async def list_keys(request: Request, tenant_id: RowId):
    context, principal = _ctx(request)
    await _tenant(context, principal, tenant_id)
    keys = await in_thread(context.admin.keys.list_for_tenant, tenant_id)
    return ORJSONResponse({"data": [k.public() | {"active": k.active} for k in keys]})


@router.post("/tenants/{tenant_id}/keys", status_code=201)
async def create_key(request: Request, tenant_id: RowId, body: NewKey):
    context, principal = _ctx(request)
    await _tenant(context, principal, tenant_id)
    return await _create_key(context, principal, tenant_id, body)


async def _create_key(context: AppContext, principal: Principal, tenant_id: int | None, body: NewKey,
                      name: str | None = None):  # fmt: skip
    expires_at = body.expires_at
    if body.expires_in_days:
        expires_at = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    try:
        plaintext, record = await in_thread(lambda: context.admin.keys.create(
            name or body.name, tuple(body.scopes), expires_at=expires_at, tenant_id=tenant_id,
            allowed_models=tuple(body.allowed_models), limits=body.limits.stored(), priority=body.priority,
            actor=principal.actor))  # fmt: skip
    except ValueError as exc:
        raise _value_error(exc) from None
    return ORJSONResponse({**record.public(), "key": plaintext}, status_code=201)


async def _key(context: AppContext, principal: Principal, key_id: int):
    record = await in_thread(context.admin.keys.get, key_id)
    if record is None or not principal.sees(record.tenant_id):  # another tenant's key looks like a missing one
        raise NotFound(f"no key with id {key_id}")
    return record


@router.get("/keys/{key_id}")
async def get_key(request: Request, key_id: RowId):
    context, principal = _ctx(request)
    record = await _key(context, principal, key_id)
    return ORJSONResponse(record.public() | {"active": record.active})


@router.patch("/keys/{key_id}")
async def patch_key(request: Request, key_id: RowId, body: KeyPatch):
    context, principal = _ctx(request)
    await _key(context, principal, key_id)
    changes = body.model_dump(exclude_unset=True)
    if "limits" in changes:
        changes["limits"] = body.limits.stored() if body.limits else {}
    try:
        record = await in_thread(lambda: context.admin.keys.update(key_id, changes, actor=principal.actor))
    except ValueError as exc:
        raise _value_error(exc) from None
    return ORJSONResponse(record.public() | {"active": record.active})


@router.delete("/keys/{key_id}")
async def revoke_key(request: Request, key_id: RowId):
    context, principal = _ctx(request)
    await _key(context, principal, key_id)
    record = await in_thread(lambda: context.admin.keys.revoke(str(key_id), actor=principal.actor))
    return ORJSONResponse(record.public() | {"active": record.active})


@router.post("/keys/{key_id}/rotate", status_code=201)
async def rotate_key(request: Request, key_id: RowId, body: Rotation | None = None):
    """A new key with the same settings; the old one keeps working for ``grace_seconds``, then expires."""
    context, principal = _ctx(request)
    await _key(context, principal, key_id)
    grace = (body or Rotation()).grace_seconds
    rotated = await in_thread(lambda: context.admin.keys.rotate(key_id, grace, actor=principal.actor))
    if rotated is None:
        raise NotFound(f"no key with id {key_id}")
    plaintext, record, _ = rotated
    return ORJSONResponse({**record.public(), "key": plaintext}, status_code=201)


# -- admin users ------------------------------------------------------------------------------------


@router.get("/admin-users")
async def list_users(request: Request):
    context, principal = _ctx(request)
    users = await in_thread(context.admin.users.list, None if principal.is_platform else principal.tenant_id)
    return ORJSONResponse({"data": [u.public() for u in users]})


@router.post("/admin-users", status_code=201)
async def create_user(request: Request, body: NewUser):
    context, principal = _ctx(request)
    if not principal.is_platform and (body.role != "tenant_admin" or body.tenant_id != principal.tenant_id):
        raise NotFound("no such tenant")
    try:
        user = await in_thread(lambda: context.admin.users.create(
            body.username, body.password, body.role, body.tenant_id, actor=principal.actor))  # fmt: skip
    except ValueError as exc:
        raise _value_error(exc) from None
    except Conflict:
        raise APIError(f"user {body.username!r} already exists (or the tenant does not)", status_code=409,
                       code="conflict") from None  # fmt: skip
    return ORJSONResponse(user.public(), status_code=201)


@router.patch("/admin-users/{user_id}")
async def patch_user(request: Request, user_id: RowId, body: UserPatch):
    context, principal = _ctx(request)
    user = await in_thread(context.admin.users.get, user_id)
    if user is None or not principal.sees(user.tenant_id):  # another tenant's user looks like a missing one
        raise NotFound(f"no admin user with id {user_id}")
    try:
        user = await in_thread(lambda: context.admin.users.update(
            user_id, body.model_dump(exclude_unset=True), actor=principal.actor))  # fmt: skip
    except ValueError as exc:
        raise _value_error(exc) from None
    return ORJSONResponse(user.public())


@router.delete("/admin-users/{user_id}", status_code=204)
async def delete_user(request: Request, user_id: RowId):
    context, principal = _ctx(request)
    user = await in_thread(context.admin.users.get, user_id)
    if user is None or not principal.sees(user.tenant_id):  # another tenant's user looks like a missing one
        raise NotFound(f"no admin user with id {user_id}")
    await in_thread(lambda: context.admin.users.delete(user_id, actor=principal.actor))
    return Response(status_code=204)


# -- prices, usage, statements, request log -----------------------------------------------------------


@router.get("/prices")
async def list_prices(request: Request):
    context, _ = _ctx(request)
    prices = await in_thread(context.admin.usage.prices)
    return ORJSONResponse({"data": [{"model": m, "prompt_per_million": str(p.prompt_per_million),
                                     "completion_per_million": str(p.completion_per_million)}
                                    for m, p in sorted(prices.items())]})  # fmt: skip


@router.put("/prices/{model:path}")
async def put_price(request: Request, model: ModelPath, body: PriceBody):
    context, principal = _ctx(request)
    principal.require_platform()
    await in_thread(lambda: context.admin.usage.set_price(
        model, body.prompt_per_million, body.completion_per_million, actor=principal.actor))  # fmt: skip
    return ORJSONResponse({"model": model, "prompt_per_million": str(body.prompt_per_million),
                           "completion_per_million": str(body.completion_per_million)})  # fmt: skip


@router.get("/usage")
async def usage(
    request: Request,
    group_by: str = Query(default="tenant"),
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
    tenant_id: QueryId = None,
    format: str = Query(default="json", pattern="^(json|csv)$"),
):
    context, principal = _ctx(request)
    return await usage_report(context, principal, group_by=group_by, start=start, end=end, tenant_id=tenant_id,
                              format=format)  # fmt: skip


@router.get("/usage.csv")
async def usage_csv(request: Request, group_by: str = "tenant", start: str | None = Query(default=None, alias="from"),
                    end: str | None = Query(default=None, alias="to"), tenant_id: QueryId = None):  # fmt: skip
    return await usage(request, group_by=group_by, start=start, end=end, tenant_id=tenant_id, format="csv")


@router.get("/tenants/{tenant_id}/statement")
async def statement(request: Request, tenant_id: RowId, month: str = Query(pattern=r"^\d{4}-\d{2}$")):
    """The monthly statement: usage and cost per model, plus totals, for one tenant."""
    context, principal = _ctx(request)
    tenant = await _tenant(context, principal, tenant_id)
    try:
        begin, finish = month_bounds(month)
    except ValueError as exc:
        raise _value_error(exc) from None
    lines = await in_thread(context.admin.usage.summarize, "model", begin, finish, tenant_id)
    total_cost = sum((Decimal(line["cost"]) for line in lines), Decimal(0))
    return ORJSONResponse({
        "tenant": {"id": tenant.id, "name": tenant.name}, "month": month, "from": begin.isoformat(),
        "to": finish.isoformat(), "lines": lines,
        "totals": {"requests": sum(line["requests"] for line in lines),
                   "prompt_tokens": sum(line["prompt_tokens"] for line in lines),
                   "completion_tokens": sum(line["completion_tokens"] for line in lines),
                   "cost": str(total_cost.quantize(Decimal("0.000001")))},
    })  # fmt: skip


@router.get("/request-log")
async def request_log(
    request: Request,
    tenant_id: QueryId = None,
    key_id: QueryId = None,
    model: QueryText = None,
    status: QueryStatus = None,
    start: str | None = Query(default=None, alias="from"),
    end: str | None = Query(default=None, alias="to"),
    limit: int = Query(default=100, ge=1, le=1000),
    before_id: QueryBigId = None,
):
    """Who called what, when, from where, with which model and backend, sizes and status."""
    context, principal = _ctx(request)
    tenant = principal.scope_tenant(tenant_id)
    begin, finish = query_moment(start, "from"), query_moment(end, "to")
    rows = await in_thread(lambda: context.admin.usage.request_log(
        tenant_id=tenant, key_id=key_id, model=model, status=status, start=begin, end=finish, limit=limit,
        before_id=before_id))  # fmt: skip
    if not principal.is_platform:
        rows = [r for r in rows if r["tenant_id"] == principal.tenant_id]
    return ORJSONResponse({"data": rows, "next_before_id": rows[-1]["id"] if len(rows) == limit else None})
