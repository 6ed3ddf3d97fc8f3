"""Who is calling the admin API: a platform admin, or a tenant admin limited to one tenant.

Accepted credentials: an API key with the ``admin`` scope (a key without a tenant
is a platform admin; a key of a tenant is that tenant's admin), or the JWT from
``POST /api/auth/login`` (``Authorization: Bearer <jwt>`` or the ``inferhub_session``
cookie set by the dashboard) while its user exists and is enabled.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
import structlog
from fastapi import Request

from inferhub.api.context import authenticate
from inferhub.errors import AuthenticationFailed, NotFound, PermissionDenied
from inferhub.tenancy.tenants import AdminUserRecord

SESSION_COOKIE = "inferhub_session"
_ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    actor: str
    role: str  # platform_admin | tenant_admin
    tenant_id: int | None

    @property
    def is_platform(self) -> bool:
        return self.role == "platform_admin"

    def require_platform(self) -> None:
        if not self.is_platform:
            raise PermissionDenied("this needs a platform admin", code="platform_admin_required")

    def sees(self, tenant_id: int | None) -> bool:
        """Whether a resource of ``tenant_id`` (None: the platform's) is visible to this admin."""
        return self.is_platform or (tenant_id is not None and tenant_id == self.tenant_id)

    def require_tenant(self, tenant_id: int | None) -> None:
        """Tenant admins see only their tenant; another tenant's resources are reported as not found."""
        if not self.is_platform and tenant_id != self.tenant_id:
            raise NotFound("no such resource", code="not_found")

    def scope_tenant(self, requested: int | None) -> int | None:
        """The tenant filter to apply: a tenant admin is pinned to theirs."""
        if self.is_platform:
            return requested
        if requested is not None and requested != self.tenant_id:
            raise NotFound("no such tenant", code="not_found")
        return self.tenant_id


def issue_token(signing_key: bytes, *, user_id: int, username: str, role: str, tenant_id: int | None,
                minutes: int) -> tuple[str, int]:  # fmt: skip
    now = int(time.time())
    claims = {"sub": username, "uid": user_id, "role": role, "tenant_id": tenant_id, "iat": now,
              "exp": now + minutes * 60, "iss": "inferhub"}  # fmt: skip
    return jwt.encode(claims, signing_key, algorithm=_ALGORITHM), minutes * 60


def admin_principal(request: Request) -> Principal:
    token = _bearer(request) or request.cookies.get(SESSION_COOKIE)
    if token and token.count(".") == 2 and token.startswith("eyJ"):
        signing_key = request.app.state.context.signing_key
        try:
            claims = jwt.decode(token, signing_key, algorithms=[_ALGORITHM], issuer="inferhub")
        except jwt.ExpiredSignatureError:
            raise AuthenticationFailed("the admin session has expired; log in again", code="session_expired") from None
        except jwt.InvalidTokenError:
            raise AuthenticationFailed("invalid admin session token", code="invalid_session") from None
        user = _session_user(request, claims)
        structlog.contextvars.bind_contextvars(admin_user=user.username)
        return Principal(f"user:{user.username}", user.role, user.tenant_id)
    record = authenticate(request, scope="admin")
    if "admin" not in record.scopes:
        raise PermissionDenied(f"API key {record.prefix}… lacks the 'admin' scope")
    role = "platform_admin" if record.tenant_id is None else "tenant_admin"
    return Principal(f"key:{record.prefix}", role, record.tenant_id)


def _session_user(request: Request, claims: dict) -> AdminUserRecord:
    """The user a valid token names, as this replica knows them now: a signature is not enough.

    A user disabled or deleted since the token was issued is refused at once (the cache of admin
    users is updated by this process's own writes and by NOTIFY from the others); role and tenant
    come from the user, not from the token.
    """
    users = request.app.state.context.admin_users
    user = users.by_id(claims.get("uid")) if users is not None else None
    if user is None or user.disabled or user.username != claims.get("sub"):
        raise AuthenticationFailed(
            "this admin session is no longer valid (the user was disabled or removed); log in again",
            code="session_revoked",
        )
    return user


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
