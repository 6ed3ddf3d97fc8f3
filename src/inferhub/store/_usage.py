"""Usage records (one per request), model prices, and the billing queries over them."""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import delete, func, select

from inferhub.store._audit import record_change
from inferhub.store.database import Database
from inferhub.store.models import ModelPriceRow, UsageRow
from inferhub.tenancy.usage import GROUPS, Price, UsageRecord

_USAGE_COLUMNS = tuple(f.name for f in fields(UsageRecord))
_PROMPT_INDEX = _USAGE_COLUMNS.index("prompt")
_COLUMN_LIST = ", ".join(_USAGE_COLUMNS)
# Per session; emptied at each commit. Created from the real table, so a new column needs no change here.
_CREATE_INCOMING = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS usage_incoming ON COMMIT DELETE ROWS AS "
    f"SELECT {_COLUMN_LIST} FROM usage_records WITH NO DATA"
)
_COPY_INCOMING = f"COPY usage_incoming ({_COLUMN_LIST}) FROM STDIN"
_INSERT_INCOMING = (
    f"INSERT INTO usage_records ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM usage_incoming "
    "ON CONFLICT (request_id) DO NOTHING"
)


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def insert_many(self, records: list[UsageRecord]) -> int:
        """Insert a batch; a record already stored (same request_id) is skipped, so a retry never doubles it.

        ``COPY`` into a temporary table, then one ``INSERT … SELECT … ON CONFLICT DO NOTHING``: two statements
        of one fixed shape whatever the batch size. A multi-row ``VALUES`` list compiled by SQLAlchemy cost
        ~500 µs of CPU per record (it competes with the event loop for the GIL) and, since every batch size
        is a new statement, filled psycopg's and SQLAlchemy's statement caches (docs/performance.md).
        """
        if not records:
            return 0
        with self._db.engine.begin() as connection:
            cursor = connection.connection.driver_connection.cursor()
            cursor.execute(_CREATE_INCOMING)
            with cursor.copy(_COPY_INCOMING) as copy:
                for record in records:
                    row = [getattr(record, column) for column in _USAGE_COLUMNS]
                    if row[_PROMPT_INDEX] is not None:
                        row[_PROMPT_INDEX] = Jsonb(row[_PROMPT_INDEX])
                    copy.write_row(row)
            cursor.execute(_INSERT_INCOMING)
            return max(cursor.rowcount, 0)

    def count(self) -> int:
        with self._db.session() as session:
            return session.scalar(select(func.count()).select_from(UsageRow)) or 0

    def totals_since(self, since: datetime) -> dict[tuple[str, int], tuple[int, Decimal]]:
        """(scope, id) → (tokens, cost) since a moment, for seeding budget counters at start."""
        out: dict[tuple[str, int], tuple[int, Decimal]] = {}
        with self._db.session() as session:
            for column, scope in ((UsageRow.tenant_id, "tenant"), (UsageRow.key_id, "key")):
                tokens = func.sum(UsageRow.prompt_tokens + UsageRow.completion_tokens)
                rows = session.execute(
                    select(column, tokens, func.sum(UsageRow.cost))
                    .where(UsageRow.at >= since, column.is_not(None))
                    .group_by(column)
                )
                for owner, tokens, cost in rows:
                    out[(scope, owner)] = (int(tokens or 0), Decimal(cost or 0))
        return out

    def summarize(self, group_by: str, start: datetime, end: datetime, tenant_id: int | None = None) -> list[dict]:
        if group_by not in GROUPS:
            raise ValueError(f"group_by must be one of {', '.join(GROUPS)}")
        column = {
            "tenant": UsageRow.tenant_id,
            "key": UsageRow.key_id,
            "model": UsageRow.model,
            "day": func.to_char(func.timezone("UTC", UsageRow.at), "YYYY-MM-DD"),
        }[group_by]
        query = (
            select(
                column.label("group"),
                func.count().label("requests"),
                func.sum(UsageRow.prompt_tokens).label("prompt_tokens"),
                func.sum(UsageRow.completion_tokens).label("completion_tokens"),
                func.sum(UsageRow.cost).label("cost"),
                func.count().filter(UsageRow.status >= 400).label("errors"),
            )
            .where(UsageRow.at >= start, UsageRow.at < end)
            .group_by(column)
            .order_by(column)
        )
        if tenant_id is not None:
            query = query.where(UsageRow.tenant_id == tenant_id)
        with self._db.session() as session:
            return [
                {group_by: row.group, "requests": row.requests, "prompt_tokens": int(row.prompt_tokens or 0),
                 "completion_tokens": int(row.completion_tokens or 0),
                 "total_tokens": int((row.prompt_tokens or 0) + (row.completion_tokens or 0)),
                 "cost": str(Decimal(row.cost or 0).quantize(Decimal("0.000001"))), "errors": row.errors}
                for row in session.execute(query)
            ]  # fmt: skip

    def request_log(self, *, tenant_id: int | None = None, key_id: int | None = None, model: str | None = None,
                    status: int | None = None, start: datetime | None = None, end: datetime | None = None,
                    limit: int = 100, before_id: int | None = None) -> list[dict]:  # fmt: skip
        query = select(UsageRow).order_by(UsageRow.id.desc()).limit(limit)
        for column, value in ((UsageRow.tenant_id, tenant_id), (UsageRow.key_id, key_id), (UsageRow.model, model),
                              (UsageRow.status, status)):  # fmt: skip
            if value is not None:
                query = query.where(column == value)
        if start is not None:
            query = query.where(UsageRow.at >= start)
        if end is not None:
            query = query.where(UsageRow.at < end)
        if before_id is not None:
            query = query.where(UsageRow.id < before_id)
        with self._db.session() as session:
            return [_log_row(r) for r in session.scalars(query)]

    def purge_before(self, cutoff: datetime) -> int:
        with self._db.session() as session:
            return session.execute(delete(UsageRow).where(UsageRow.at < cutoff)).rowcount or 0

    # -- prices ------------------------------------------------------------------------------------

    def prices(self) -> dict[str, Price]:
        with self._db.session() as session:
            return {r.model_name: Price(Decimal(r.prompt_per_million), Decimal(r.completion_per_million))
                    for r in session.scalars(select(ModelPriceRow))}  # fmt: skip

    def set_price(self, model: str, prompt: Decimal, completion: Decimal, *, actor: str, source: str = "api") -> None:
        with self._db.session() as session:
            row = session.get(ModelPriceRow, model)
            before = ({"prompt_per_million": str(row.prompt_per_million),
                       "completion_per_million": str(row.completion_per_million)} if row else None)  # fmt: skip
            if row is None:
                row = ModelPriceRow(model_name=model)
                session.add(row)
            row.prompt_per_million, row.completion_per_million, row.source = prompt, completion, source
            after = {"prompt_per_million": str(prompt), "completion_per_million": str(completion)}
            record_change(session, actor=actor, action="update" if before else "create", entity_type="model_price",
                          entity_id=model, before=before, after=after)  # fmt: skip
            self._db.notify_change(session, "prices")


def _log_row(row: UsageRow) -> dict[str, Any]:
    out = {
        "id": row.id, "at": row.at.isoformat(), "tenant_id": row.tenant_id, "key_id": row.key_id,
        "endpoint": row.endpoint, "model": row.model, "backend": row.backend, "status": row.status,
        "prompt_tokens": row.prompt_tokens, "completion_tokens": row.completion_tokens,
        "latency_ms": round(row.latency_ms, 2), "ttft_ms": round(row.ttft_ms, 2) if row.ttft_ms is not None else None,
        "cost": format(row.cost.normalize(), "f"), "client_ip": row.client_ip, "request_bytes": row.request_bytes,
        "response_bytes": row.response_bytes,
    }  # fmt: skip
    if row.prompt is not None or row.completion is not None:
        out["prompt"] = row.prompt
        out["completion"] = row.completion
    return out
