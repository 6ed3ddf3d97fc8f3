"""KeyCache: API keys held in memory by hash, so authenticating costs no database round trip."""

from __future__ import annotations

import base64
import hashlib

from inferhub.errors import AuthenticationFailed, PermissionDenied
from inferhub.store.keys import KeyRecord


class KeyCache:
    def __init__(self) -> None:
        self._by_hash: dict[str, KeyRecord] = {}

    def replace(self, records: list[KeyRecord]) -> None:
        self._by_hash = {r.key_hash: r for r in records}
        self._by_id = {r.id: r for r in records}

    def by_id(self, key_id: int) -> KeyRecord | None:
        return getattr(self, "_by_id", {}).get(key_id)

    def authenticate(self, authorization: str | None, x_api_key: str | None = None) -> KeyRecord:
        """Accepts ``Bearer <key>``, HTTP Basic with the key as password, or ``x-api-key``."""
        key = _extract_key(authorization) or x_api_key
        if not key:
            raise AuthenticationFailed(
                "missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key"
            )
        record = self._by_hash.get(hashlib.sha256(key.encode()).hexdigest())
        if record is None:
            raise AuthenticationFailed("invalid API key")
        if not record.active:
            reason = "revoked" if record.revoked_at else "expired"
            raise AuthenticationFailed(f"API key {record.prefix}… has been {reason}", code=f"key_{reason}")
        return record


def require_scope(record: KeyRecord, scope: str) -> None:
    if scope not in record.scopes and "admin" not in record.scopes:
        raise PermissionDenied(f"API key {record.prefix}… lacks the '{scope}' scope")


def _extract_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "bearer":
        return value or None
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        _, _, password = decoded.partition(":")
        return password or None
    return None
