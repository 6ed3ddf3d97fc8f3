"""Tenants (teams or apps) and admin users: the records and the rules a role and a password must follow."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ROLES = ("platform_admin", "tenant_admin")


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: int
    name: str
    description: str
    limits: dict[str, Any] = field(default_factory=dict)
    store_payloads: bool = False
    created_at: datetime | None = None

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "description": self.description, "limits": dict(self.limits),
                "store_payloads": self.store_payloads,
                "created_at": self.created_at.isoformat() if self.created_at else None}  # fmt: skip


@dataclass(frozen=True, slots=True)
class AdminUserRecord:
    id: int
    username: str
    role: str
    tenant_id: int | None
    disabled: bool

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "username": self.username, "role": self.role, "tenant_id": self.tenant_id,
                "disabled": self.disabled}  # fmt: skip


def check_role(role: str, tenant_id: int | None) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if role == "tenant_admin" and tenant_id is None:
        raise ValueError("a tenant_admin needs a tenant_id")
    if role == "platform_admin" and tenant_id is not None:
        raise ValueError("a platform_admin belongs to no tenant")


def check_password(password: str) -> None:
    if len(password) < 12:
        raise ValueError("password must be at least 12 characters")
