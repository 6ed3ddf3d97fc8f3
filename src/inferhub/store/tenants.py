"""Tenants (teams or apps) and admin users. Every change is audited and NOTIFYs the replicas.

``AdminUserRepository.on_change``, if set, is called with each committed user
(``(id, record)``, or ``(id, None)`` once deleted) so this process's own cache of
admin users can apply it at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select

from inferhub.store._audit import record_change
from inferhub.store.database import Database
from inferhub.store.models import AdminUserRow, TenantRow
from inferhub.tenancy.keys import check_limits
from inferhub.tenancy.tenants import AdminUserRecord, TenantRecord, check_password, check_role

_hasher = PasswordHasher()


def _tenant(row: TenantRow) -> TenantRecord:
    return TenantRecord(row.id, row.name, row.description, dict(row.limits or {}), row.store_payloads, row.created_at)


def _user(row: AdminUserRow) -> AdminUserRecord:
    return AdminUserRecord(row.id, row.username, row.role, row.tenant_id, row.disabled)


class TenantRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list(self) -> list[TenantRecord]:
        with self._db.session() as session:
            return [_tenant(r) for r in session.scalars(select(TenantRow).order_by(TenantRow.id))]

    def get(self, tenant_id: int) -> TenantRecord | None:
        with self._db.session() as session:
            row = session.get(TenantRow, tenant_id)
            return _tenant(row) if row else None

    def get_by_name(self, name: str) -> TenantRecord | None:
        with self._db.session() as session:
            row = session.scalar(select(TenantRow).where(TenantRow.name == name))
            return _tenant(row) if row else None

    def create(self, name: str, *, description: str = "", limits: dict[str, Any] | None = None,
               store_payloads: bool = False, actor: str) -> TenantRecord:  # fmt: skip
        check_limits(limits or {})
        with self._db.session() as session:
            row = TenantRow(name=name, description=description, limits=dict(limits or {}),
                            store_payloads=store_payloads)  # fmt: skip
            session.add(row)
            session.flush()
            session.refresh(row)
            record = _tenant(row)
            record_change(session, actor=actor, action="create", entity_type="tenant", entity_id=row.id,
                          after=record.public())  # fmt: skip
            self._db.notify_change(session, "tenants")
            return record

    def update(self, tenant_id: int, changes: dict[str, Any], *, actor: str) -> TenantRecord | None:
        if "limits" in changes:
            check_limits(changes["limits"] or {})
        with self._db.session() as session:
            row = session.get(TenantRow, tenant_id)
            if row is None:
                return None
            before = _tenant(row).public()
            for name, value in changes.items():
                setattr(row, name, value)
            session.flush()
            record = _tenant(row)
            record_change(session, actor=actor, action="update", entity_type="tenant", entity_id=tenant_id,
                          before=before, after=record.public())  # fmt: skip
            self._db.notify_change(session, "tenants")
            return record

    def delete(self, tenant_id: int, *, actor: str) -> bool:
        with self._db.session() as session:
            row = session.get(TenantRow, tenant_id)
            if row is None:
                return False
            record_change(session, actor=actor, action="delete", entity_type="tenant", entity_id=tenant_id,
                          before=_tenant(row).public())  # fmt: skip
            session.delete(row)  # its keys and admin users go with it (ON DELETE CASCADE)
            self._db.notify_change(session, "tenants")
            self._db.notify_change(session, "keys")
            self._db.notify_change(session, "admin_users")
            return True


class AdminUserRepository:
    def __init__(self, db: Database, on_change: Callable[[int, AdminUserRecord | None], None] | None = None) -> None:
        self._db = db
        self.on_change = on_change

    def _committed(self, user_id: int, record: AdminUserRecord | None) -> None:
        if self.on_change is not None:
            self.on_change(user_id, record)

    def list(self, tenant_id: int | None = None) -> list[AdminUserRecord]:
        with self._db.session() as session:
            query = select(AdminUserRow).order_by(AdminUserRow.id)
            if tenant_id is not None:
                query = query.where(AdminUserRow.tenant_id == tenant_id)
            return [_user(r) for r in session.scalars(query)]

    def get(self, user_id: int) -> AdminUserRecord | None:
        with self._db.session() as session:
            row = session.get(AdminUserRow, user_id)
            return _user(row) if row else None

    def create(self, username: str, password: str, role: str, tenant_id: int | None, *, actor: str) -> AdminUserRecord:
        check_role(role, tenant_id)
        check_password(password)
        with self._db.session() as session:
            row = AdminUserRow(username=username, password_hash=_hasher.hash(password), role=role, tenant_id=tenant_id)
            session.add(row)
            session.flush()
            session.refresh(row)
            record = _user(row)
            record_change(session, actor=actor, action="create", entity_type="admin_user", entity_id=row.id,
                          after=record.public())  # fmt: skip
            self._db.notify_change(session, "admin_users")
        self._committed(record.id, record)
        return record

    def update(self, user_id: int, changes: dict[str, Any], *, actor: str) -> AdminUserRecord | None:
        with self._db.session() as session:
            row = session.get(AdminUserRow, user_id)
            if row is None:
                return None
            before = _user(row).public()
            password = changes.pop("password", None)
            if password is not None:
                check_password(password)
                row.password_hash = _hasher.hash(password)
            for name, value in changes.items():
                setattr(row, name, value)
            check_role(row.role, row.tenant_id)
            session.flush()
            record = _user(row)
            after = record.public() | ({"password": "changed"} if password else {})
            record_change(session, actor=actor, action="update", entity_type="admin_user", entity_id=user_id,
                          before=before, after=after)  # fmt: skip
            self._db.notify_change(session, "admin_users")
        self._committed(user_id, record)
        return record

    def delete(self, user_id: int, *, actor: str) -> bool:
        with self._db.session() as session:
            row = session.get(AdminUserRow, user_id)
            if row is None:
                return False
            record_change(session, actor=actor, action="delete", entity_type="admin_user", entity_id=user_id,
                          before=_user(row).public())  # fmt: skip
            session.delete(row)
            self._db.notify_change(session, "admin_users")
        self._committed(user_id, None)
        return True

    def verify(self, username: str, password: str) -> AdminUserRecord | None:
        """The user if the password matches and the account is enabled; argon2 runs either way."""
        with self._db.session() as session:
            row = session.scalar(select(AdminUserRow).where(AdminUserRow.username == username))
            stored = row.password_hash if row else _DUMMY_HASH
            try:
                _hasher.verify(stored, password)
            except (VerificationError, InvalidHashError):
                return None
            if row is None or row.disabled:
                return None
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = _hasher.hash(password)
            return _user(row)


_DUMMY_HASH = _hasher.hash("inferhub-timing-equaliser")
