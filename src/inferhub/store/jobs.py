"""The ``jobs`` table as a durable work queue: submit, claim with a lease, finish exactly once.

Why not a queue library: the guarantees the jobs API promises (accepted means
committed; a worker killed mid-job loses nothing; the result is stored once and
one usage record exists) hold when the job's state, its lease and its result
live in one row changed in one transaction. ``SELECT … FOR UPDATE SKIP LOCKED``
gives the queue; a lease (renewed while running) gives crash recovery; the
``lease_owner`` guard on the final UPDATE makes a late, superseded worker's
result a no-op; a job whose lease ran out ``max_attempts`` times fails instead of
being taken up again. Webhook deliveries are claimed the same way (their own lease
and schedule in the row), so each attempt is made by exactly one worker.
procrastinate would add a second job table to keep in step with this one for no
extra guarantee.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert

from inferhub.errors import Conflict
from inferhub.store.database import Database
from inferhub.store.models import JobRow, UsageRow
from inferhub.tenancy.usage import UsageRecord

JOB_CHANNEL = "inferhub_jobs"
FINISHED = ("succeeded", "failed", "cancelled")


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


def job_view(row: JobRow) -> dict[str, Any]:
    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    return {
        "id": row.id, "object": "job", "type": row.type, "status": row.status, "priority": row.priority,
        "created_at": iso(row.created_at), "started_at": iso(row.started_at), "finished_at": iso(row.finished_at),
        "attempts": row.attempts, "result": row.result, "error": row.error, "usage": row.usage,
        "metadata": row.metadata_ or {}, "webhook_url": row.webhook_url, "webhook_state": row.webhook_state,
        "webhook_attempts": row.webhook_attempts, "tenant_id": row.tenant_id, "key_id": row.key_id,
        "batch_id": row.batch_id,
    }  # fmt: skip


class JobRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def submit(self, *, tenant_id: int | None, key_id: int, type: str, body: dict[str, Any], priority: int,
               webhook_url: str | None, metadata: dict[str, Any], idempotency_key: str | None,
               max_attempts: int, job_id: str | None = None) -> tuple[dict[str, Any], bool]:  # fmt: skip
        """Commit a new job (and wake the workers); with a known idempotency key, return the existing one.
        ``job_id`` lets the caller name the job first (a background response records it before the job exists)."""
        if idempotency_key:
            existing = self._by_idempotency(key_id, idempotency_key)
            if existing is not None:
                return existing, False
        try:
            with self._db.session() as session:
                row = JobRow(id=job_id or new_job_id(), tenant_id=tenant_id, key_id=key_id, type=type, body=body,
                             priority=priority, webhook_url=webhook_url, metadata_=metadata,
                             idempotency_key=idempotency_key, max_attempts=max_attempts, status="queued",
                             attempts=0, cancel_requested=False, webhook_attempts=0)  # fmt: skip
                session.add(row)
                session.flush()
                session.refresh(row)
                session.execute(text("SELECT pg_notify(:c, :id)"), {"c": JOB_CHANNEL, "id": row.id})
                return job_view(row), True
        except Conflict:  # the same idempotency key raced in from another request
            existing = self._by_idempotency(key_id, idempotency_key or "")
            if existing is None:
                raise
            return existing, False

    def _by_idempotency(self, key_id: int, idempotency_key: str) -> dict[str, Any] | None:
        with self._db.session() as session:
            row = session.scalar(select(JobRow).where(JobRow.key_id == key_id,
                                                      JobRow.idempotency_key == idempotency_key))  # fmt: skip
            return job_view(row) if row else None

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._db.session() as session:
            row = session.get(JobRow, job_id)
            return job_view(row) if row else None

    def detail(self, job_id: str) -> dict[str, Any] | None:
        """The job with what ``job_view`` leaves out: its request body, attempt budget and retry schedule."""
        with self._db.session() as session:
            row = session.get(JobRow, job_id)
            if row is None:
                return None
            return job_view(row) | {"body": row.body, "max_attempts": row.max_attempts,
                                    "run_after": row.run_after.isoformat() if row.run_after else None,
                                    "cancel_requested": row.cancel_requested, "custom_id": row.custom_id}  # fmt: skip

    def list(self, *, tenant_id: int | None, key_id: int | None, status: str | None, limit: int,
             after: str | None) -> list[dict[str, Any]]:  # fmt: skip
        """Newest first; ``after`` is the id of the last job of the previous page."""
        query = select(JobRow).order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
        query = query.where(JobRow.batch_id.is_(None))  # a batch's lines are listed through the batch
        query = query.where(JobRow.tenant_id == tenant_id) if tenant_id is not None else query.where(
            JobRow.key_id == key_id)  # fmt: skip
        if status:
            query = query.where(JobRow.status == status)
        with self._db.session() as session:
            if after:
                anchor = session.get(JobRow, after)
                if anchor is not None:
                    query = query.where(
                        (JobRow.created_at < anchor.created_at)
                        | ((JobRow.created_at == anchor.created_at) & (JobRow.id < anchor.id))
                    )
            return [job_view(r) for r in session.scalars(query)]

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Queued → cancelled now; running → flagged (its worker stops the upstream call)."""
        with self._db.session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None:
                return None
            if row.status == "queued":
                row.status, row.finished_at = "cancelled", datetime.now(UTC)
                row.error = {"message": "cancelled before it started", "code": "cancelled"}
            elif row.status == "running":
                row.cancel_requested = True
                session.execute(text("SELECT pg_notify(:c, :id)"), {"c": JOB_CHANNEL, "id": "cancel:" + row.id})
            session.flush()
            return job_view(row)

    # -- the worker's side ---------------------------------------------------------------------------

    def claim(self, owner: str, lease_seconds: float, limit: int = 1) -> list[dict[str, Any]]:
        """Take up to ``limit`` of the most urgent runnable jobs (or ones whose lease ran out), with a lease.

        A job whose lease ran out on its last allowed attempt is not taken again: ``fail_abandoned`` ends it.
        """
        with self._db.session() as session:
            rows = session.execute(text("""
                UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = :owner,
                       lease_expires_at = now() + make_interval(secs => :lease),
                       started_at = coalesce(started_at, now())
                WHERE id IN (
                    SELECT id FROM jobs
                    WHERE (status = 'queued' AND run_after <= now())
                       OR (status = 'running' AND lease_expires_at < now() AND attempts < max_attempts)
                    ORDER BY priority DESC, created_at
                    FOR UPDATE SKIP LOCKED LIMIT :limit)
                RETURNING id
            """), {"owner": owner, "lease": lease_seconds, "limit": limit}).all()  # fmt: skip
            claimed = []
            for row in rows:
                job = session.get(JobRow, row.id)
                claimed.append(job_view(job) | {"body": job.body, "max_attempts": job.max_attempts,
                                                "cancel_requested": job.cancel_requested})  # fmt: skip
            claimed.sort(key=lambda j: (-j["priority"], j["created_at"]))
            return claimed

    def fail_abandoned(self) -> list[dict[str, Any]]:
        """End the jobs whose worker stopped (lease ran out) on their last allowed attempt; returns them."""
        with self._db.session() as session:
            rows = session.execute(text("""
                UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                       finished_at = now(), lease_owner = NULL, lease_expires_at = NULL,
                       error = CASE WHEN cancel_requested
                           THEN jsonb_build_object('message', 'cancelled while running', 'code', 'cancelled')
                           ELSE jsonb_strip_nulls(jsonb_build_object(
                               'message', format('the worker running the job stopped before finishing it (its '
                                                 || 'lease ran out) on attempt %s of %s', attempts, max_attempts),
                               'code', 'worker_lost', 'status', 500, 'previous_error', error))
                           END,
                       webhook_state = CASE WHEN webhook_url IS NOT NULL THEN 'pending' ELSE webhook_state END,
                       webhook_next_at = NULL
                WHERE id IN (
                    SELECT id FROM jobs
                    WHERE status = 'running' AND lease_expires_at < now() AND attempts >= max_attempts
                    FOR UPDATE SKIP LOCKED)
                RETURNING id
            """)).all()  # fmt: skip
            return [job_view(session.get(JobRow, row.id)) for row in rows]

    def renew(self, job_id: str, owner: str, lease_seconds: float) -> bool:
        with self._db.session() as session:
            result = session.execute(text(
                "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => :lease) "
                "WHERE id = :id AND lease_owner = :owner AND status = 'running' RETURNING cancel_requested"),
                {"id": job_id, "owner": owner, "lease": lease_seconds}).first()  # fmt: skip
            return result is not None and not result.cancel_requested

    def finish(self, job_id: str, owner: str, *, status: str, result: Any = None, error: Any = None,
               usage: Any = None, retry_in: float | None = None, refund_attempt: bool = False,
               usage_record: UsageRecord | None = None) -> dict[str, Any] | None:  # fmt: skip
        """Record the outcome if this worker still holds the lease; a superseded worker's result is dropped.

        With ``retry_in`` the job goes back to the queue for later (``refund_attempt``: this attempt does
        not count, as when limits deferred it). The usage record is inserted in the same transaction as
        the final outcome: a job leaves exactly one, however often it ran.
        """
        with self._db.session() as session:
            row = session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.lease_owner != owner or row.status != "running":
                return None
            row.lease_owner, row.lease_expires_at = None, None
            if retry_in is not None and row.cancel_requested:  # cancelled while it waited to be retried
                status, error, retry_in = "cancelled", {"message": "cancelled while running", "code": "cancelled"}, None
                result = usage = usage_record = None
            if retry_in is not None:
                row.status, row.error = "queued", error
                row.run_after = datetime.now(UTC) + timedelta(seconds=retry_in)
                if refund_attempt:
                    row.attempts = max(row.attempts - 1, 0)
            else:
                row.status, row.result, row.error, row.usage = status, result, error, usage
                row.finished_at = datetime.now(UTC)
                if row.webhook_url:
                    row.webhook_state, row.webhook_next_at = "pending", None
                if usage_record is not None:
                    statement = insert(UsageRow).values(asdict(usage_record))
                    session.execute(statement.on_conflict_do_nothing(index_elements=["request_id"]))
            session.flush()
            return job_view(row)

    def release(self, job_id: str, owner: str) -> bool:
        """Give a running job back to the queue (graceful shutdown); the interrupted attempt is not counted."""
        with self._db.session() as session:
            result = session.execute(text(
                "UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, "
                "attempts = greatest(attempts - 1, 0), run_after = now() "
                "WHERE id = :id AND lease_owner = :owner AND status = 'running'"),
                {"id": job_id, "owner": owner})  # fmt: skip
            if result.rowcount:
                session.execute(text("SELECT pg_notify(:c, :id)"), {"c": JOB_CHANNEL, "id": job_id})
            return bool(result.rowcount)

    # -- webhook deliveries ------------------------------------------------------------------------

    def claim_webhooks(self, owner: str, lease_seconds: float, limit: int) -> list[dict[str, Any]]:
        """Take up to ``limit`` due deliveries (or ones whose claim ran out) for one attempt each.

        One atomic UPDATE, so with any number of workers each attempt is made by one of them.
        """
        with self._db.session() as session:
            rows = session.execute(text("""
                UPDATE jobs SET webhook_state = 'delivering', webhook_owner = :owner,
                       webhook_next_at = now() + make_interval(secs => :lease)
                WHERE id IN (
                    SELECT id FROM jobs
                    WHERE webhook_state IN ('pending', 'delivering')
                      AND coalesce(webhook_next_at, '-infinity') <= now()
                    ORDER BY webhook_next_at NULLS FIRST
                    FOR UPDATE SKIP LOCKED LIMIT :limit)
                RETURNING id
            """), {"owner": owner, "lease": lease_seconds, "limit": limit}).all()  # fmt: skip
            return [job_view(session.get(JobRow, row.id)) for row in rows]

    def webhook_attempted(self, job_id: str, owner: str, *, delivered: bool, retry_in: float | None) -> bool:
        """Record one attempt of a claimed delivery: delivered, due again in ``retry_in`` s, or given up (None)."""
        state = "delivered" if delivered else ("pending" if retry_in is not None else "failed")
        with self._db.session() as session:
            result = session.execute(text("""
                UPDATE jobs SET webhook_state = :state, webhook_owner = NULL, webhook_attempts = webhook_attempts + 1,
                       webhook_next_at = now() + make_interval(secs => :retry)
                WHERE id = :id AND webhook_owner = :owner AND webhook_state = 'delivering'
            """), {"id": job_id, "owner": owner, "state": state, "retry": retry_in})  # fmt: skip
            return bool(result.rowcount)

    # -- retention -----------------------------------------------------------------------------------

    def purge_finished_before(self, cutoff: datetime) -> int:
        """Delete jobs finished before ``cutoff``; a batch's jobs go with their batch (``BatchRepository``)."""
        with self._db.session() as session:
            return session.execute(text(
                "DELETE FROM jobs WHERE status IN ('succeeded','failed','cancelled') AND finished_at < :cutoff "
                "AND batch_id IS NULL"), {"cutoff": cutoff}).rowcount or 0  # fmt: skip

    def counts(self) -> dict[str, int]:
        with self._db.session() as session:
            rows = session.execute(text("SELECT status, count(*) FROM jobs GROUP BY status"))
            return {status: count for status, count in rows}
