"""The ``llm_backends`` table: registry rows and their running statistics."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from sqlalchemy import select, update

from inferhub.fleet.records import BackendRecord, StatsDelta
from inferhub.settings import CREDENTIAL_FIELDS, BackendConfig
from inferhub.store._audit import record_change
from inferhub.store.database import Database
from inferhub.store.models import BackendRow

EDITABLE = (
    "model_name",
    "backend_type",
    "endpoint_url",
    "upstream_model",
    "enabled",
    "max_tokens",
    "temperature_default",
    "timeout_seconds",
    "description",
    "weight",
    "priority",
    "max_concurrency",
    "draining",
    "discover_models",
    "capabilities",
)


def _record(row: BackendRow) -> BackendRecord:
    return BackendRecord(**{f.name: getattr(row, f.name) for f in fields(BackendRecord)})


def _config_view(record: BackendRecord) -> dict[str, Any]:
    """The configuration part of a backend (no running stats, no secrets), as audited."""
    view = {name: getattr(record, name) for name in ("id", *EDITABLE)}
    view["has_credentials"] = record.credentials_encrypted is not None
    return view


def _split_credentials(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the secret fields (to be encrypted) from the plain configuration."""
    plain = {k: v for k, v in values.items() if k not in CREDENTIAL_FIELDS}
    secret = {k: v for k, v in values.items() if k in CREDENTIAL_FIELDS and v}
    return plain, secret


class BackendRepository:
    def __init__(self, db: Database, box: Any = None) -> None:
        self._db = db
        self._box = box

    def _encrypt(self, secret: dict[str, Any]) -> str | None:
        if not secret:
            return None
        if self._box is None:
            raise ValueError("upstream credentials need the master key (INFERHUB_SECRET_KEY)")
        return self._box.encrypt(secret)

    def list(self) -> list[BackendRecord]:
        with self._db.session() as session:
            return [_record(r) for r in session.scalars(select(BackendRow).order_by(BackendRow.id))]

    def get(self, backend_id: int) -> BackendRecord | None:
        with self._db.session() as session:
            row = session.get(BackendRow, backend_id)
            return _record(row) if row else None

    def add(self, config: BackendConfig, *, source: str = "api", actor: str = "cli") -> BackendRecord:
        plain, secret = _split_credentials(config.model_dump())
        with self._db.session() as session:
            row = BackendRow(**plain, source=source, credentials_encrypted=self._encrypt(secret))
            session.add(row)
            session.flush()
            session.refresh(row)
            record = _record(row)
            record_change(session, actor=actor, action="create", entity_type="backend", entity_id=row.id,
                          after=_config_view(record))  # fmt: skip
            self._db.notify_change(session, "backends")
            return record

    def update(
        self, backend_id: int, changes: dict[str, Any], *, actor: str = "cli", action: str = "update"
    ) -> BackendRecord | None:
        unknown = set(changes) - set(EDITABLE) - set(CREDENTIAL_FIELDS) - {"clear_credentials"}
        if unknown:
            raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
        clear = changes.pop("clear_credentials", False)
        dropped = [name for name in CREDENTIAL_FIELDS if name in changes and changes[name] is None]
        plain, secret = _split_credentials(changes)
        with self._db.session() as session:
            row = session.get(BackendRow, backend_id)
            if row is None:
                return None
            before = _config_view(_record(row))
            for name, value in plain.items():
                setattr(row, name, value)
            if clear:
                row.credentials_encrypted = None
            if secret or (dropped and row.credentials_encrypted and self._box):
                stored = row.credentials_encrypted
                current = self._box.decrypt(stored) if stored and self._box else {}
                kept = {k: v for k, v in current.items() if k not in dropped}  # null clears that credential
                row.credentials_encrypted = self._encrypt({**kept, **secret})
            session.flush()
            session.refresh(row)
            record = _record(row)
            record_change(session, actor=actor, action=action, entity_type="backend", entity_id=backend_id,
                          before=before, after=_config_view(record))  # fmt: skip
            self._db.notify_change(session, "backends")
            return record

    def remove(self, backend_id: int, *, actor: str = "cli") -> bool:
        with self._db.session() as session:
            row = session.get(BackendRow, backend_id)
            if row is None:
                return False
            record_change(session, actor=actor, action="delete", entity_type="backend", entity_id=backend_id,
                          before=_config_view(_record(row)))  # fmt: skip
            session.delete(row)
            self._db.notify_change(session, "backends")
            return True

    def sync_from_config(self, configs: list[BackendConfig]) -> None:
        """Make the rows declared in ``inferhub.yaml`` match the file; leave other rows alone."""
        with self._db.session() as session:
            existing = {
                (r.model_name, r.endpoint_url): r
                for r in session.scalars(select(BackendRow).where(BackendRow.source == "config"))
            }
            declared = set()
            for config in configs:
                values, secret = _split_credentials(config.model_dump())
                encrypted = self._encrypt(secret)
                key = (config.model_name, config.endpoint_url)
                declared.add(key)
                row = existing.get(key) or session.scalar(
                    select(BackendRow).where(
                        BackendRow.model_name == config.model_name,
                        BackendRow.endpoint_url == config.endpoint_url,
                    )
                )
                if row is None:
                    session.add(BackendRow(**values, source="config", credentials_encrypted=encrypted))
                else:
                    for name, value in values.items():
                        setattr(row, name, value)
                    row.source = "config"
                    row.credentials_encrypted = encrypted
            for key, row in existing.items():
                if key not in declared:
                    record_change(session, actor="config", action="delete", entity_type="backend",
                                  entity_id=row.id, before={"model_name": key[0], "endpoint_url": key[1]})  # fmt: skip
                    session.delete(row)
            self._db.notify_change(session, "backends")

    def add_stats(self, deltas: dict[int, StatsDelta]) -> None:
        """Fold a batch of request outcomes into the running averages."""
        with self._db.session() as session:
            for backend_id, delta in deltas.items():
                row = session.get(BackendRow, backend_id, with_for_update=True)
                if row is None or delta.requests == 0:
                    continue
                total = row.total_requests + delta.requests
                avg_latency = (row.avg_latency_ms * row.total_requests + delta.latency_ms_sum) / total
                values: dict[str, Any] = {
                    "total_requests": total,
                    "total_errors": row.total_errors + delta.errors,
                    "avg_latency_ms": avg_latency,
                }
                if delta.generation_seconds > 0 and delta.tokens > 0:
                    rate = delta.tokens / delta.generation_seconds
                    previous = row.avg_tokens_per_sec
                    values["avg_tokens_per_sec"] = rate if previous == 0 else 0.8 * previous + 0.2 * rate
                session.execute(update(BackendRow).where(BackendRow.id == backend_id).values(**values))


def rotate_credentials(db: Database, box: Any) -> int:
    """Re-encrypt every stored credential under the newest master key; returns how many."""
    count = 0
    with db.session() as session:
        for row in session.scalars(select(BackendRow).where(BackendRow.credentials_encrypted.is_not(None))):
            row.credentials_encrypted = box.rotate(row.credentials_encrypted)
            count += 1
        db.notify_change(session, "backends")
    return count
