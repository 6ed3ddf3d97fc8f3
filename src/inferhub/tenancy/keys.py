"""API keys: the record, its scopes and limits, and the key format (only the SHA-256 hash is ever stored)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

KEY_PREFIX = "ih-"
ALL_SCOPES = ("inference", "jobs", "rag", "admin")
LIMIT_NAMES = ("rpm", "tpm", "concurrency", "daily_tokens", "monthly_tokens", "daily_cost", "monthly_cost")
# Kept with the limits but not a limit: the share of a saturated model's fair queue (docs/routing.md).
WEIGHT = "weight"
MAX_WEIGHT = 100


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def display_prefix(key: str) -> str:
    """The short, non-secret part shown in listings and logs."""
    return key[:10]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: int
    name: str
    prefix: str
    key_hash: str
    scopes: tuple[str, ...]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    tenant_id: int | None = None
    allowed_models: tuple[str, ...] = ()
    limits: dict[str, Any] = field(default_factory=dict)
    priority: int = 0

    def allows_model(self, model: str) -> bool:
        """An empty allow-list allows every model; otherwise a glob must match (``llama*``, ``*:8b``)."""
        return not self.allowed_models or any(fnmatchcase(model, glob) for glob in self.allowed_models)

    @property
    def active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > datetime.now(UTC)

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "scopes": list(self.scopes),
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "tenant_id": self.tenant_id,
            "allowed_models": list(self.allowed_models),
            "limits": dict(self.limits),
            "priority": self.priority,
        }


def check_scopes(scopes: list[str] | tuple[str, ...], *, listing_known: bool = True) -> None:
    unknown = set(scopes) - set(ALL_SCOPES)
    if unknown:
        known = f"; known: {', '.join(ALL_SCOPES)}" if listing_known else ""
        raise ValueError(f"unknown scope(s): {', '.join(sorted(unknown))}{known}")


def check_limits(limits: dict[str, Any]) -> None:
    known = (*LIMIT_NAMES, WEIGHT)
    unknown = set(limits) - set(known)
    if unknown:
        raise ValueError(f"unknown limit(s): {', '.join(sorted(unknown))}; known: {', '.join(known)}")
    for name, value in limits.items():
        if name == WEIGHT:
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or not 1 <= value <= MAX_WEIGHT):  # fmt: skip
                raise ValueError(f"weight must be a whole number from 1 to {MAX_WEIGHT}, got {value!r}")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value < 0):
            raise ValueError(f"limit {name} must be a non-negative number or null, got {value!r}")


def fair_queue_weight(limits: dict[str, Any]) -> int:
    return limits.get(WEIGHT) or 1


def check_weight_owner(limits: dict[str, Any], tenant_id: int | None) -> None:
    """The fair queue's parties are tenants, and keys without one: a tenant's key shares its tenant's turn."""
    if tenant_id is not None and limits.get(WEIGHT) is not None:
        raise ValueError("weight: a key of a tenant queues with its tenant; set the weight on the tenant")
