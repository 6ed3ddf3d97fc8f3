"""``config_audit_log``: who changed what configuration, when, with the values before and after."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from inferhub.store.database import Database
from inferhub.store.models import AuditRow

SECRET_FIELDS = frozenset({"key_hash", "password_hash", "secret", "api_key", "headers"})


def _scrub(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: ("***" if k in SECRET_FIELDS else _jsonable(v)) for k, v in values.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def record_change(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | int,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Add an audit row in the caller's transaction, so the change and its record commit together."""
    session.add(
        AuditRow(
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            before=_scrub(before),
            after=_scrub(after),
        )
    )


class AuditRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list(
        self,
        *,
        entity_type: str | None = None,
        entity_id: str | None = None,
        actor: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[dict[str, Any]]:
        query = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit)
        if entity_type:
            query = query.where(AuditRow.entity_type == entity_type)
        if entity_id:
            query = query.where(AuditRow.entity_id == entity_id)
        if actor:
            query = query.where(AuditRow.actor == actor)
        if before_id:
            query = query.where(AuditRow.id < before_id)
        with self._db.session() as session:
            return [
                {
                    "id": row.id,
                    "at": row.at.isoformat(),
                    "actor": row.actor,
                    "action": row.action,
                    "entity_type": row.entity_type,
                    "entity_id": row.entity_id,
                    "before": row.before,
                    "after": row.after,
                }
                for row in session.scalars(query)
            ]
