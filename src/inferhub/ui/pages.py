"""What every dashboard page shares: the session, CSRF, rendering, and reading form fields.

Every page needs the ``inferhub_session`` cookie (the same JWT as ``POST /api/auth/login``); every
form carries a CSRF token that must match the ``inferhub_csrf`` cookie (double submit). Changes go
through the same services as the JSON admin API, with the logged-in user as the audit actor. A
tenant admin sees only their tenant: another tenant's pages answer 404.

A form whose input is wrong raises :class:`FormError`; the handler shows the form again with the
message next to the values that were sent (422), never a bare error page.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool

from inferhub.api.context import AppContext, context_of
from inferhub.api.principal import SESSION_COOKIE, Principal, admin_principal
from inferhub.api.responses import ORJSONResponse
from inferhub.errors import APIError, NotFound, PermissionDenied
from inferhub.tenancy.keys import LIMIT_NAMES
from inferhub.ui import TEMPLATE_DIR

CSRF_COOKIE = "inferhub_csrf"
CSRF_FIELD = "csrf_token"
PLAYGROUND_KEY = "ui-playground"

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


class LoginRequired(Exception):
    pass


class FormError(APIError):
    """Bad input in a form field: shown above the form, which keeps what was typed."""

    status_code = 422
    code = "invalid_form"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message, param=field)


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


def page_router() -> APIRouter:
    """A router for one group of pages under ``/ui``; ``routes.py`` mounts them all.

    The prefix is the router's own (not given to ``include_router``), so each route's ``path`` is the full
    template (``/ui/playground/chat``) that HttpMetrics uses as the ``endpoint`` label.
    """
    return APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


# -- session and CSRF ----------------------------------------------------------------------------------


def principal_of(request: Request) -> Principal:
    if not request.cookies.get(SESSION_COOKIE):
        raise LoginRequired()
    return admin_principal(request)


def context_for(request: Request) -> AppContext:
    context = context_of(request)
    if context.admin is None or context.config is None:
        raise APIError("the dashboard needs the database", status_code=503, code="admin_unavailable")
    return context


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_csrf(request: Request, response: Response, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), path="/ui")


def check_csrf(request: Request, sent: str) -> None:
    expected = request.cookies.get(CSRF_COOKIE) or ""
    if not expected or not sent or not secrets.compare_digest(expected, sent):
        raise PermissionDenied("the form's CSRF token does not match this session; reload the page", code="csrf")


async def read_form(request: Request) -> dict[str, Any]:
    """The posted form, after checking its CSRF token against the cookie (``_multi``: every value)."""
    form = await request.form()
    check_csrf(request, str(form.get(CSRF_FIELD) or ""))
    return {k: v for k, v in form.multi_items() if k != CSRF_FIELD} | {"_multi": form}


# -- rendering -----------------------------------------------------------------------------------------


def render(request: Request, template: str, principal: Principal | None, status_code: int = 200, **values: Any):
    values.setdefault("flash", request.query_params.get("flash"))
    return templates.TemplateResponse(
        request, template,
        {"principal": principal, "csrf": request.cookies.get(CSRF_COOKIE, ""), "path": request.url.path, **values},
        status_code=status_code,
    )  # fmt: skip


def back(url: str, flash: str | None = None) -> RedirectResponse:
    """See other ``url`` (after a successful post), with a status message for the next page."""
    if flash:
        url, hash_, fragment = url.partition("#")
        url += ("&" if "?" in url else "?") + "flash=" + quote(flash) + hash_ + fragment
    return RedirectResponse(url, status_code=303)


async def load_tenant(context: AppContext, principal: Principal, tenant_id: int):
    """The tenant, if this admin may see it (another tenant's answers 404 like a missing one)."""
    principal.require_tenant(tenant_id)
    tenant = await run_in_threadpool(context.admin.tenants.get, tenant_id)
    if tenant is None:
        raise NotFound(f"no tenant with id {tenant_id}")
    return tenant


async def visible_tenants(context: AppContext, principal: Principal) -> list:
    return [t for t in await run_in_threadpool(context.admin.tenants.list) if principal.sees(t.id)]


# -- form fields ---------------------------------------------------------------------------------------


def lenient_int(value: Any) -> int | None:
    """An integer from a query parameter, or None for anything else (filters ignore junk)."""
    text = str(value or "").strip()
    return int(text) if text.lstrip("-").isdigit() else None


def text_field(form: dict[str, Any], name: str, label: str | None = None, max_length: int = 200) -> str:
    """A text field, stripped; FormError (naming ``label``) when longer than the column holds."""
    value = form.get(name)
    text = value.strip() if isinstance(value, str) else ""
    if label is not None and len(text) > max_length:
        raise FormError(f"{label}: at most {max_length} characters", name)
    return text


def number_field(form: dict[str, Any], name: str, label: str, *, kind: type = int, minimum: float | None = None,
                 maximum: float | None = None, required: bool = False) -> Any:  # fmt: skip
    """A number typed into ``name`` (None when empty and not required); FormError with ``label`` otherwise."""
    raw = text_field(form, name)
    if not raw:
        if required:
            raise FormError(f"{label}: required", name)
        return None
    try:
        value = kind(raw)
    except ValueError:
        expected = "a whole number" if kind is int else "a number"
        raise FormError(f"{label}: expected {expected}, got {raw!r}", name) from None
    if kind is float and not math.isfinite(value):
        raise FormError(f"{label}: expected a number, got {raw!r}", name)
    if minimum is not None and value < minimum:
        raise FormError(f"{label}: must be at least {minimum:g}", name)
    if maximum is not None and value > maximum:
        raise FormError(f"{label}: must be at most {maximum:g}", name)
    return value


def limits_field(form: dict[str, Any]) -> dict[str, Any]:
    """The ``limit_*`` fields as a limits mapping; an empty field means no limit."""
    limits: dict[str, Any] = {}
    for name in LIMIT_NAMES:
        value = number_field(form, f"limit_{name}", name.replace("_", " "), minimum=0,
                             kind=float if name.endswith("_cost") else int)  # fmt: skip
        if value is not None:
            limits[name] = value
    return limits


def list_field(value: Any) -> list[str]:
    """Comma- or newline-separated values."""
    return [part.strip() for part in str(value or "").replace("\n", ",").split(",") if part.strip()]


def submitted(form: dict[str, Any]) -> dict[str, Any]:
    """What the user sent, to fill the form in again after an error."""
    multi = form["_multi"]
    values: dict[str, Any] = {k: v for k, v in form.items() if k != "_multi" and isinstance(v, str)}
    values["scopes"] = [str(v) for v in multi.getlist("scopes")]
    return values


# -- audit log ------------------------------------------------------------------------------------------


_EMPTY = (None, "", [], {})


def audit_changes(entry: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """The fields an audit entry changed, as (field, before, after); a new or deleted entity's empty ones left out."""
    before, after = entry.get("before") or {}, entry.get("after") or {}
    changes = []
    for name in sorted({*before, *after} - {"id", "created_at"}):
        old, new = before.get(name), after.get(name)
        if old != new and not (old in _EMPTY and new in _EMPTY):
            changes.append((name, old, new))
    return changes
