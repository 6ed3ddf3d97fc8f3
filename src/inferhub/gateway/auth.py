"""KeyCache and AdminUserCache: who may call, held in memory so authenticating costs no database round trip.

Both are replaced wholesale by every reload (PostgreSQL NOTIFY tells every replica
that keys or admin users changed) and updated at once by this process's own
writes (``put``, ``drop``): a key revoked or an admin user disabled here is refused
on the very next request here, without waiting for the notification to come back.
A reload that began before such a write may have read the rows before it was
committed, so ``replace(records, loaded_since=generation)`` lays the writes made
since ``generation`` over what it loaded; a reload that began after a write drops it.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

from inferhub.errors import AuthenticationFailed, PermissionDenied
from inferhub.tenancy.keys import KeyRecord
from inferhub.tenancy.tenants import AdminUserRecord


class _HasId(Protocol):
    @property
    def id(self) -> int: ...


R = TypeVar("R", bound=_HasId)


class _ReloadedRecords(Generic[R]):
    """Records by id: a reload replaces them all, a local write changes one at once (copy on write)."""

    def __init__(self) -> None:
        self._by_id: dict[int, R] = {}
        self._writes: dict[int, tuple[int, R | None]] = {}  # id -> (generation, record or None if removed)
        self._lock = threading.Lock()  # writes may come from worker threads (the repositories run there)
        self.generation = 0

    def replace(self, records: Iterable[R], *, loaded_since: int | None = None) -> None:
        """Install a full load; pass the ``generation`` read before the load started."""
        by_id = {r.id: r for r in records}
        with self._lock:
            since = self.generation if loaded_since is None else loaded_since
            self._writes = {i: w for i, w in self._writes.items() if w[0] > since}
            for record_id, (_, record) in self._writes.items():
                if record is None:
                    by_id.pop(record_id, None)
                else:
                    by_id[record_id] = record
            self._install(by_id)

    def put(self, record: R) -> None:
        """A record this process has just committed (created, changed, revoked)."""
        self._write(record.id, record)

    def drop(self, record_id: int) -> None:
        """A record this process has just deleted."""
        self._write(record_id, None)

    def drop_where(self, predicate: Callable[[R], bool]) -> None:
        for record in [r for r in self._by_id.values() if predicate(r)]:
            self.drop(record.id)

    def by_id(self, record_id: int | None) -> R | None:
        return self._by_id.get(record_id) if record_id is not None else None

    def _write(self, record_id: int, record: R | None) -> None:
        with self._lock:
            self.generation += 1
            self._writes[record_id] = (self.generation, record)
            by_id = dict(self._by_id)
            if record is None:
                by_id.pop(record_id, None)
            else:
                by_id[record_id] = record
            self._install(by_id)

    def _install(self, by_id: dict[int, R]) -> None:
        self._by_id = by_id


class KeyCache(_ReloadedRecords[KeyRecord]):
    def __init__(self) -> None:
        super().__init__()
        self._by_hash: dict[str, KeyRecord] = {}

    def _install(self, by_id: dict[int, KeyRecord]) -> None:
        by_hash = {r.key_hash: r for r in by_id.values()}
        self._by_id, self._by_hash = by_id, by_hash

    def authenticate(self, authorization: str | None, x_api_key: str | None = None) -> KeyRecord:
        """Accepts ``Bearer <key>``, HTTP Basic with the key as password, or ``x-api-key``."""
        key = _extract_key(authorization) or x_api_key
        if not key:
            raise AuthenticationFailed("missing API key: send 'Authorization: Bearer <key>'", code="missing_api_key")
        record = self._by_hash.get(hashlib.sha256(key.encode()).hexdigest())
        if record is None:
            raise AuthenticationFailed("invalid API key")
        if not record.active:
            reason = "revoked" if record.revoked_at else "expired"
            raise AuthenticationFailed(f"API key {record.prefix}… has been {reason}", code=f"key_{reason}")
        return record


class AdminUserCache(_ReloadedRecords[AdminUserRecord]):
    """Admin users by id: a session token is honoured only while its user exists and is enabled."""

    def apply(self, user_id: int, record: AdminUserRecord | None) -> None:
        """``AdminUserRepository.on_change``: a user this process has just committed, or deleted (None)."""
        if record is None:
            self.drop(user_id)
        else:
            self.put(record)


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
