"""Stored Responses (OpenAI Responses API): what ``store``, ``previous_response_id``, ``GET``/``DELETE
/v1/responses/{id}``, ``/input_items``, ``background`` and ``/cancel`` read and write.

One row per response, owned as jobs are: by its tenant, or (for a key without a tenant) by the key
itself. Every read takes the caller's tenant, so another tenant's id is simply not found (the route
answers 404, never 403: ids are not confirmed to outsiders). A row ends once: after ``completed``,
``incomplete``, ``failed`` or ``cancelled`` nothing changes it, so a background job that finishes after
a cancel cannot bring the response back. Rows go after the retention period (``purge``, driven by
``housekeeping.purge_responses``), or at their own ``expires_at`` if one was set.

The methods are coroutines that run the blocking SQLAlchemy work in a thread, as the rest of the
store is called from the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, or_, select, text

from inferhub.deferred.responses import ACTIVE, FINAL, STATUSES, NewResponse, StoredResponse
from inferhub.errors import InvalidRequest, NotFound
from inferhub.store.database import Database
from inferhub.store.models import ResponseRow

__all__ = ["ACTIVE", "FINAL", "STATUSES", "NewResponse", "PreviousResponseNotFound", "ResponseRepository",
           "StoredResponse", "page"]  # fmt: skip

MAX_HISTORY = 100  # responses in one previous_response_id chain; a longer one is refused, not truncated
MAX_PAGE = 100  # as OpenAI's input_items ``limit``


def _record(row: ResponseRow) -> StoredResponse:
    return StoredResponse(
        id=row.id, tenant_id=row.tenant_id, key_id=row.key_id, model=row.model, status=row.status,
        background=row.background, request=row.request, input_items=list(row.input_items or []),
        response=row.response, previous_response_id=row.previous_response_id, job_id=row.job_id,
        created_at=row.created_at, updated_at=row.updated_at, expires_at=row.expires_at,
    )  # fmt: skip


class PreviousResponseNotFound(NotFound):
    """A ``previous_response_id`` (or an earlier link of its chain) that is not there: never stored,
    deleted, purged, expired, or another tenant's."""

    code = "previous_response_not_found"

    def __init__(self, response_id: str) -> None:
        super().__init__(f"Previous response with id '{response_id}' not found.", param="previous_response_id")
        self.response_id = response_id


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown response status {status!r}; expected one of {', '.join(STATUSES)}")


def _visible(tenant_id: int | None, key_id: int | None) -> list[ColumnElement[bool]]:
    """The rows the caller may see: its tenant's; for a key without a tenant, tenant-less rows (only
    ``key_id``'s when given; an admin key passes None and sees them all, as for jobs). Expired rows
    not yet purged are already gone."""
    owner = [ResponseRow.tenant_id == tenant_id] if tenant_id is not None else [ResponseRow.tenant_id.is_(None)]
    if tenant_id is None and key_id is not None:
        owner.append(ResponseRow.key_id == key_id)
    alive = or_(ResponseRow.expires_at.is_(None), ResponseRow.expires_at > text("now()"))
    return [*owner, alive]


def _with_status(response: dict[str, Any] | None, status: str) -> dict[str, Any] | None:
    return None if response is None else {**response, "status": status}


class ResponseRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- the route's side --------------------------------------------------------------------------

    async def create(self, record: NewResponse) -> StoredResponse:
        """Commit a new response (before the model is called, so a background job can find it)."""
        return await asyncio.to_thread(self._create, record)

    async def get(self, response_id: str, tenant_id: int | None, *, key_id: int | None = None) -> StoredResponse | None:
        """The response if the caller may see it; None for an unknown id and for another tenant's."""
        return await asyncio.to_thread(self._get, response_id, tenant_id, key_id)

    async def delete(self, response_id: str, tenant_id: int | None, *, key_id: int | None = None) -> bool:
        """Remove it; False when there was nothing the caller may delete (the route answers 404).
        A running background job is not stopped here: cancel it first (``cancel`` then the job)."""
        return await asyncio.to_thread(self._delete, response_id, tenant_id, key_id)

    async def history(self, response_id: str, tenant_id: int | None, *, key_id: int | None = None,
                      max_depth: int = MAX_HISTORY) -> list[dict[str, Any]]:  # fmt: skip
        """What ``previous_response_id=response_id`` replays: each response of the chain back to its
        start, oldest first, as its input items followed by its output items (``to_chat``'s history).

        Raises ``PreviousResponseNotFound`` (404) naming the first missing link, and ``InvalidRequest``
        (400) for a response still running or a chain longer than ``max_depth``.
        """
        return await asyncio.to_thread(self._history, response_id, tenant_id, key_id, max_depth)

    async def input_items(self, response_id: str, tenant_id: int | None, *, key_id: int | None = None,
                          after: str | None = None, limit: int = 20,
                          order: str = "desc") -> dict[str, Any] | None:  # fmt: skip
        """One page of ``GET /v1/responses/{id}/input_items`` in OpenAI's list shape; None when the
        response is not visible. Bad ``limit``/``order``/``after`` raise ``InvalidRequest`` (400)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise InvalidRequest(f"limit must be an integer from 1 to {MAX_PAGE}", param="limit")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
        record = await self.get(response_id, tenant_id, key_id=key_id)
        if record is None:
            return None
        return page(record.input_items, after=after, limit=limit, order=order)

    async def cancel(
        self, response_id: str, tenant_id: int | None, *, key_id: int | None = None
    ) -> StoredResponse | None:
        """``POST /v1/responses/{id}/cancel``: a queued or running background response becomes
        ``cancelled``; a finished one is returned unchanged (cancelling twice is harmless, as at OpenAI);
        None when not visible. Only background responses can be cancelled (else ``InvalidRequest``).
        The caller then cancels ``record.job_id`` on the job queue; the job's late result is dropped by
        ``complete``."""
        return await asyncio.to_thread(self._cancel, response_id, tenant_id, key_id)

    # -- the runner's side (route for foreground, job worker for background) -----------------------

    async def set_status(self, response_id: str, status: str, *, response: dict[str, Any] | None = None,
                         job_id: str | None = None) -> StoredResponse | None:  # fmt: skip
        """Move a response that has not ended to ``status`` (the stored Response's ``status`` follows),
        optionally replacing the Response object or recording its job; None when it is gone or already
        ended (cancelled meanwhile, say): the caller stops."""
        return await asyncio.to_thread(self._transition, response_id, status, response, job_id)

    async def complete(self, response_id: str, response_obj: dict[str, Any],
                       status: str | None = None) -> StoredResponse | None:  # fmt: skip
        """Store the final Response object (``status``: its own ``status`` unless given, one of
        completed/incomplete/failed/cancelled). Done once: None if the response had already ended."""
        final = status or response_obj.get("status") or "completed"
        if final not in FINAL:
            raise ValueError(f"complete() needs a final status, not {final!r}")
        return await asyncio.to_thread(self._transition, response_id, final, response_obj, None)

    # -- retention ---------------------------------------------------------------------------------

    async def purge(self, older_than: datetime) -> int:
        """Delete responses created before ``older_than`` and those past their ``expires_at``; returns
        how many. A background response still queued or running is kept (its job is not purged either)."""
        return await asyncio.to_thread(self._purge, older_than)

    # -- the blocking work -------------------------------------------------------------------------

    def _create(self, record: NewResponse) -> StoredResponse:
        _check_status(record.status)
        with self._db.session() as session:
            row = ResponseRow(
                id=record.id, tenant_id=record.tenant_id, key_id=record.key_id, model=record.model,
                status=record.status, background=record.background, request=record.request,
                input_items=record.input_items, response=_with_status(record.response, record.status),
                previous_response_id=record.previous_response_id, job_id=record.job_id,
                expires_at=record.expires_at,
            )  # fmt: skip
            session.add(row)
            session.flush()
            session.refresh(row)
            return _record(row)

    def _get(self, response_id: str, tenant_id: int | None, key_id: int | None) -> StoredResponse | None:
        with self._db.session() as session:
            row = session.scalar(select(ResponseRow).where(ResponseRow.id == response_id,
                                                           *_visible(tenant_id, key_id)))  # fmt: skip
            return _record(row) if row else None

    def _delete(self, response_id: str, tenant_id: int | None, key_id: int | None) -> bool:
        with self._db.session() as session:
            result = session.execute(delete(ResponseRow).where(ResponseRow.id == response_id,
                                                               *_visible(tenant_id, key_id)))  # fmt: skip
            return bool(result.rowcount)

    def _history(self, response_id: str, tenant_id: int | None, key_id: int | None,
                 max_depth: int) -> list[dict[str, Any]]:  # fmt: skip
        rows = self._chain(response_id, tenant_id, key_id, max_depth)
        if not rows:
            raise PreviousResponseNotFound(response_id)
        oldest = rows[-1]
        if oldest.previous_response_id is not None:
            if len(rows) >= max_depth:
                raise InvalidRequest(
                    f"the conversation before '{response_id}' is longer than {max_depth} responses; "
                    "start a new one and send the context you need as input",
                    param="previous_response_id",
                )
            raise PreviousResponseNotFound(oldest.previous_response_id)
        items: list[dict[str, Any]] = []
        for row in reversed(rows):
            if row.status in ACTIVE:
                raise InvalidRequest(f"response '{row.id}' is still {row.status}; wait until it has finished",
                                     param="previous_response_id", code="previous_response_in_progress")  # fmt: skip
            items += list(row.input_items or [])
            items += list((row.response or {}).get("output") or [])
        return items

    def _chain(self, response_id: str, tenant_id: int | None, key_id: int | None, max_depth: int) -> list[Any]:
        """The response and its predecessors (newest first), each visible to the caller, in one query."""
        owner = "r.tenant_id = :tenant" if tenant_id is not None else (
            "r.tenant_id IS NULL" + (" AND r.key_id = :key" if key_id is not None else ""))  # fmt: skip
        visible = f"{owner} AND (r.expires_at IS NULL OR r.expires_at > now())"
        statement = text(f"""
            WITH RECURSIVE chain AS (
                SELECT r.id, r.previous_response_id, r.status, r.input_items, r.response, 1 AS depth
                FROM responses r WHERE r.id = :id AND {visible}
                UNION ALL
                SELECT r.id, r.previous_response_id, r.status, r.input_items, r.response, chain.depth + 1
                FROM responses r JOIN chain ON r.id = chain.previous_response_id
                WHERE chain.depth < :depth AND {visible}
            )
            SELECT * FROM chain ORDER BY depth
        """)  # fmt: skip
        params: dict[str, Any] = {"id": response_id, "depth": max_depth, "tenant": tenant_id, "key": key_id}
        with self._db.session() as session:
            return list(session.execute(statement, params).all())

    def _cancel(self, response_id: str, tenant_id: int | None, key_id: int | None) -> StoredResponse | None:
        with self._db.session() as session:
            row = session.scalar(select(ResponseRow).where(ResponseRow.id == response_id,
                                                           *_visible(tenant_id, key_id)).with_for_update())  # fmt: skip
            if row is None:
                return None
            if not row.background:
                raise InvalidRequest("only responses created with background: true can be cancelled",
                                     param="response_id", code="not_cancellable")  # fmt: skip
            if row.status in ACTIVE:
                row.status, row.updated_at = "cancelled", datetime.now(UTC)
                row.response = _with_status(row.response, "cancelled")
                session.flush()
            return _record(row)

    def _transition(self, response_id: str, status: str, response: dict[str, Any] | None,
                    job_id: str | None) -> StoredResponse | None:  # fmt: skip
        _check_status(status)
        with self._db.session() as session:
            row = session.get(ResponseRow, response_id, with_for_update=True)
            if row is None or row.status in FINAL:
                return None
            row.status, row.updated_at = status, datetime.now(UTC)
            row.response = _with_status(response if response is not None else row.response, status)
            if job_id is not None:
                row.job_id = job_id
            session.flush()
            return _record(row)

    def _purge(self, older_than: datetime) -> int:
        with self._db.session() as session:
            result = session.execute(text("""
                DELETE FROM responses
                WHERE (created_at < :cutoff AND NOT (background AND status IN ('queued', 'in_progress')))
                   OR expires_at < now()
            """), {"cutoff": older_than})  # fmt: skip
            return result.rowcount or 0


def page(items: list[dict[str, Any]], *, after: str | None, limit: int, order: str) -> dict[str, Any]:
    """A list page as OpenAI returns one: ``after`` is the id of the last item of the previous page."""
    ordered = items if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item.get("id") for item in ordered]
        if after not in ids:
            raise InvalidRequest(f"no input item with id '{after}' in this response", param="after")
        ordered = ordered[ids.index(after) + 1 :]
    data = ordered[:limit]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0].get("id") if data else None,
        "last_id": data[-1].get("id") if data else None,
        "has_more": len(ordered) > limit,
    }
