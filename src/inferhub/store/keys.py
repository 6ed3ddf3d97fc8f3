"""API key rows: create, list, revoke. Keys are stored only as SHA-256 hashes (``tenancy.keys``).

Every change NOTIFYs the replicas; ``on_change``, if set, is called with the
committed record so this process's own key cache can apply it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select

from inferhub.store._audit import record_change
from inferhub.store.database import Database
from inferhub.store.models import ApiKeyRow
from inferhub.tenancy.keys import (
    KeyRecord,
    check_limits,
    check_scopes,
    check_weight_owner,
    display_prefix,
    generate_key,
    hash_key,
)


def _record(row: ApiKeyRow) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        key_hash=row.key_hash,
        scopes=tuple(row.scopes or ()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        tenant_id=row.tenant_id,
        allowed_models=tuple(row.allowed_models or ()),
        limits=dict(row.limits or {}),
        priority=row.priority or 0,
    )


class KeyRepository:
    def __init__(self, db: Database, on_change: Callable[[KeyRecord], None] | None = None) -> None:
        self._db = db
        self.on_change = on_change

    def _committed(self, record: KeyRecord | None) -> KeyRecord | None:
        if record is not None and self.on_change is not None:
            self.on_change(record)
        return record

    def create(
        self,
        name: str,
        scopes: list[str] | tuple[str, ...] = ("inference",),
        *,
        key: str | None = None,
        expires_at: datetime | None = None,
        tenant_id: int | None = None,
        allowed_models: list[str] | tuple[str, ...] = (),
        limits: dict[str, Any] | None = None,
        priority: int = 0,
        actor: str = "cli",
    ) -> tuple[str, KeyRecord]:
        """Store a new key; returns the plaintext (shown once) and its record."""
        check_scopes(scopes)
        check_limits(limits or {})
        check_weight_owner(limits or {}, tenant_id)
        plaintext = key or generate_key()
        with self._db.session() as session:
            row = ApiKeyRow(
                name=name,
                prefix=display_prefix(plaintext),
                key_hash=hash_key(plaintext),
                scopes=list(scopes),
                expires_at=expires_at,
                tenant_id=tenant_id,
                allowed_models=list(allowed_models),
                limits=dict(limits or {}),
                priority=priority,
            )
            session.add(row)
            session.flush()
            session.refresh(row)
            record = _record(row)
            record_change(session, actor=actor, action="create", entity_type="api_key", entity_id=row.id,
                          after=record.public())  # fmt: skip
            self._db.notify_change(session, "keys")
        self._committed(record)
        return plaintext, record

    def get(self, key_id: int) -> KeyRecord | None:
        with self._db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            return _record(row) if row else None

    def list_for_tenant(self, tenant_id: int | None) -> list[KeyRecord]:
        with self._db.session() as session:
            query = select(ApiKeyRow).order_by(ApiKeyRow.id)
            owner = ApiKeyRow.tenant_id.is_(None) if tenant_id is None else ApiKeyRow.tenant_id == tenant_id
            query = query.where(owner)
            return [_record(r) for r in session.scalars(query)]

    def update(self, key_id: int, changes: dict[str, Any], *, actor: str, action: str = "update") -> KeyRecord | None:
        if "scopes" in changes:
            check_scopes(changes["scopes"], listing_known=False)
        if "limits" in changes:
            check_limits(changes["limits"] or {})
        with self._db.session() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                return None
            if "limits" in changes:
                check_weight_owner(changes["limits"] or {}, row.tenant_id)
            before = _record(row).public()
            for name, value in changes.items():
                setattr(row, name, list(value) if isinstance(value, tuple) else value)
            session.flush()
            record = _record(row)
            record_change(session, actor=actor, action=action, entity_type="api_key", entity_id=key_id,
                          before=before, after=record.public())  # fmt: skip
            self._db.notify_change(session, "keys")
        return self._committed(record)

    def list(self) -> list[KeyRecord]:
        with self._db.session() as session:
            return [_record(r) for r in session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def find_by_hash(self, key_hash: str) -> KeyRecord | None:
        with self._db.session() as session:
            row = session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))
            return _record(row) if row else None

    def count(self) -> int:
        return len(self.list())

    def find(self, key_id_or_prefix: str) -> KeyRecord | None:
        """The one key with this id or prefix (None if there is none, or more than one)."""
        with self._db.session() as session:
            row = _one(session, key_id_or_prefix)
            return _record(row) if row else None

    def rotate(self, key_id: int, grace_seconds: float, *, actor: str = "cli",
               ) -> tuple[str, KeyRecord, KeyRecord] | None:  # fmt: skip
        """A new key with the old one's settings; the old one expires after ``grace_seconds`` (or sooner, if it
        already would). One transaction. Returns (the new key's plaintext, its record, the old key's record)."""
        with self._db.session() as session:
            old = session.get(ApiKeyRow, key_id)
            if old is None:
                return None
            before = _record(old)
            plaintext = generate_key()
            row = ApiKeyRow(
                name=f"{old.name[:190]} (rotated)",
                prefix=display_prefix(plaintext),
                key_hash=hash_key(plaintext),
                scopes=list(old.scopes or ()),
                expires_at=old.expires_at,
                tenant_id=old.tenant_id,
                allowed_models=list(old.allowed_models or ()),
                limits=dict(old.limits or {}),
                priority=old.priority or 0,
            )
            session.add(row)
            ends = datetime.now(UTC) + timedelta(seconds=grace_seconds)
            if old.expires_at is None or old.expires_at > ends:
                old.expires_at = ends
            session.flush()
            session.refresh(row)
            new, after = _record(row), _record(old)
            record_change(session, actor=actor, action="create", entity_type="api_key", entity_id=row.id,
                          after=new.public())  # fmt: skip
            record_change(session, actor=actor, action="rotate", entity_type="api_key", entity_id=key_id,
                          before=before.public(), after=after.public() | {"rotated_to": row.id})  # fmt: skip
            self._db.notify_change(session, "keys")
        self._committed(new)
        self._committed(after)
        return plaintext, new, after

    def revoke(self, key_id_or_prefix: str, *, actor: str = "cli") -> KeyRecord | None:
        with self._db.session() as session:
            row = _one(session, key_id_or_prefix)
            if row is None:
                return None
            before = _record(row).public()
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            session.flush()
            record = _record(row)
            record_change(session, actor=actor, action="revoke", entity_type="api_key", entity_id=row.id,
                          before=before, after=record.public())  # fmt: skip
            self._db.notify_change(session, "keys")
        return self._committed(record)


def _one(session: Any, key_id_or_prefix: str) -> ApiKeyRow | None:
    query = select(ApiKeyRow)
    if key_id_or_prefix.isdigit() and int(key_id_or_prefix) < 2**31:
        query = query.where(ApiKeyRow.id == int(key_id_or_prefix))
    else:
        query = query.where(ApiKeyRow.prefix == key_id_or_prefix)
    rows = list(session.scalars(query.limit(2)))
    return rows[0] if len(rows) == 1 else None
