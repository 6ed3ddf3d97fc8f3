"""Files and batches of the OpenAI Batch API, stored in PostgreSQL.

A batch's valid lines become jobs (one per line, in one transaction with the
batch row), so they run through the job worker and the gateway pipeline like any
job. When the last job of a batch finishes, ``finalize_if_done`` writes the
output and error files (JSONL, in input order) and closes the batch. Closed batches
(with their jobs and output and error files) and old files are purged after the
retention period by ``purge_closed_before``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, select, text

from inferhub.deferred.records import ENDPOINT_TYPES, BatchRecord, FileRecord, error_line, invalid_line, output_line
from inferhub.store.database import Database
from inferhub.store.jobs import JOB_CHANNEL, new_job_id
from inferhub.store.models import BatchRow, FileRow, JobRow

_OPEN = ("validating", "in_progress", "finalizing", "cancelling")
_CLOSED = ("completed", "failed", "expired", "cancelled")


def _file(row: FileRow, *, with_content: bool = False) -> FileRecord:
    return FileRecord(row.id, row.tenant_id, row.key_id, row.purpose, row.filename, row.bytes, row.created_at,
                      row.content if with_content else None)  # fmt: skip


def _batch(row: BatchRow, counts: dict[str, int]) -> BatchRecord:
    return BatchRecord(
        id=row.id, tenant_id=row.tenant_id, key_id=row.key_id, endpoint=row.endpoint,
        input_file_id=row.input_file_id, completion_window=row.completion_window, status=row.status,
        output_file_id=row.output_file_id, error_file_id=row.error_file_id, created_at=row.created_at,
        in_progress_at=row.in_progress_at, finalizing_at=row.finalizing_at, completed_at=row.completed_at,
        cancelling_at=row.cancelling_at, cancelled_at=row.cancelled_at, request_counts=counts,
        metadata=row.metadata_,
    )  # fmt: skip


class FileRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, *, tenant_id: int | None, key_id: int, purpose: str, filename: str, content: bytes) -> FileRecord:
        with self._db.session() as session:
            row = FileRow(id="file-" + uuid.uuid4().hex[:24], tenant_id=tenant_id, key_id=key_id, purpose=purpose,
                          filename=filename, bytes=len(content), content=content)  # fmt: skip
            session.add(row)
            session.flush()
            session.refresh(row)
            return _file(row)

    def get(self, file_id: str, *, with_content: bool = False) -> FileRecord | None:
        with self._db.session() as session:
            row = session.get(FileRow, file_id)
            return _file(row, with_content=with_content) if row is not None else None

    def list(self, *, tenant_id: int | None, key_id: int, purpose: str | None, limit: int) -> list[FileRecord]:
        query = select(FileRow).order_by(FileRow.created_at.desc()).limit(limit)
        owner = FileRow.tenant_id == tenant_id if tenant_id is not None else FileRow.key_id == key_id
        query = query.where(owner)
        if purpose:
            query = query.where(FileRow.purpose == purpose)
        with self._db.session() as session:
            return [_file(r) for r in session.scalars(query)]

    def delete(self, file_id: str) -> bool:
        with self._db.session() as session:
            row = session.get(FileRow, file_id)
            if row is None:
                return False
            session.delete(row)
            return True


class BatchRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, *, tenant_id: int | None, key_id: int, endpoint: str, input_file_id: str,
               completion_window: str, metadata: dict | None, requests: list[dict[str, Any]],
               invalid: list[dict[str, Any]], max_attempts: int) -> BatchRecord:  # fmt: skip
        """The batch and one queued job per valid line, committed together."""
        now = datetime.now(UTC)
        with self._db.session() as session:
            batch = BatchRow(id="batch_" + uuid.uuid4().hex[:24], tenant_id=tenant_id, key_id=key_id,
                             endpoint=endpoint, input_file_id=input_file_id, completion_window=completion_window,
                             status="in_progress", metadata_=metadata, request_total=len(requests) + len(invalid),
                             invalid_lines=invalid, in_progress_at=now)  # fmt: skip
            session.add(batch)
            for request in requests:
                session.add(JobRow(
                    id=new_job_id(), tenant_id=tenant_id, key_id=key_id, type=ENDPOINT_TYPES[endpoint],
                    body=request["body"], priority=-5, metadata_={"line": request["line"]}, status="queued",
                    attempts=0, max_attempts=max_attempts, cancel_requested=False, webhook_attempts=0,
                    batch_id=batch.id, custom_id=request["custom_id"],
                ))  # fmt: skip
            session.flush()
            session.execute(text("SELECT pg_notify(:c, :id)"), {"c": JOB_CHANNEL, "id": batch.id})
        if not requests:
            self.finalize_if_done(batch.id)
        return self.get(batch.id)  # type: ignore[return-value]

    def _counts(self, session, row: BatchRow) -> dict[str, int]:
        query = select(JobRow.status, func.count()).where(JobRow.batch_id == row.id).group_by(JobRow.status)
        done = dict(session.execute(query).all())
        invalid = len(row.invalid_lines or [])
        return {"total": row.request_total, "completed": done.get("succeeded", 0),
                "failed": done.get("failed", 0) + done.get("cancelled", 0) + invalid}  # fmt: skip

    def get(self, batch_id: str) -> BatchRecord | None:
        with self._db.session() as session:
            row = session.get(BatchRow, batch_id)
            return _batch(row, self._counts(session, row)) if row is not None else None

    def list(self, *, tenant_id: int | None, key_id: int, limit: int, after: str | None) -> list[BatchRecord]:
        query = select(BatchRow).order_by(BatchRow.created_at.desc(), BatchRow.id.desc()).limit(limit)
        query = query.where(BatchRow.tenant_id == tenant_id if tenant_id is not None else BatchRow.key_id == key_id)
        with self._db.session() as session:
            if after:
                anchor = session.get(BatchRow, after)
                if anchor is not None:
                    query = query.where(BatchRow.created_at <= anchor.created_at, BatchRow.id != anchor.id)
            return [_batch(r, self._counts(session, r)) for r in session.scalars(query)]

    def cancel(self, batch_id: str) -> BatchRecord | None:
        with self._db.session() as session:
            row = session.get(BatchRow, batch_id, with_for_update=True)
            if row is None:
                return None
            if row.status in ("in_progress", "validating"):
                row.status, row.cancelling_at = "cancelling", datetime.now(UTC)
                now = datetime.now(UTC)
                for job in session.scalars(select(JobRow).where(JobRow.batch_id == batch_id,
                                                                JobRow.status.in_(("queued", "running")))):  # fmt: skip
                    if job.status == "queued":
                        job.status, job.finished_at = "cancelled", now
                        job.error = {"message": "the batch was cancelled", "code": "batch_cancelled"}
                    else:
                        job.cancel_requested = True
                        session.execute(text("SELECT pg_notify(:c, :id)"), {"c": JOB_CHANNEL, "id": "cancel:" + job.id})
        self.finalize_if_done(batch_id)
        return self.get(batch_id)

    def finalize_if_done(self, batch_id: str) -> bool:
        """Write the output and error files once no job of the batch is queued or running."""
        with self._db.session() as session:
            row = session.get(BatchRow, batch_id, with_for_update=True)
            if row is None or row.status not in _OPEN:
                return False
            jobs = list(session.scalars(select(JobRow).where(JobRow.batch_id == batch_id)))
            if any(job.status in ("queued", "running") for job in jobs):
                return False
            now = datetime.now(UTC)
            output: list[tuple[int, bytes]] = []
            errors: list[tuple[int, bytes]] = [(line["line"], invalid_line(line.get("custom_id"), line["error"]))
                                               for line in row.invalid_lines or []]  # fmt: skip
            for job in jobs:
                line = (job.metadata_ or {}).get("line", 0)
                if job.status == "succeeded":
                    output.append((line, output_line(job.id, job.custom_id, job.result)))
                else:
                    error = job.error or {"message": job.status, "code": job.status}
                    errors.append((line, error_line(job.id, job.custom_id, error)))
            row.output_file_id = self._write(session, row, output, "output") if output else None
            row.error_file_id = self._write(session, row, errors, "error") if errors else None
            row.finalizing_at = now
            if row.status == "cancelling":
                row.status, row.cancelled_at = "cancelled", now
            else:
                row.status, row.completed_at = "completed", now
            return True

    @staticmethod
    def _write(session, batch: BatchRow, lines: list[tuple[int, bytes]], kind: str) -> str:
        content = b"".join(payload + b"\n" for _, payload in sorted(lines, key=lambda item: item[0]))
        row = FileRow(id="file-" + uuid.uuid4().hex[:24], tenant_id=batch.tenant_id, key_id=batch.key_id,
                      purpose="batch_output", filename=f"{batch.id}_{kind}.jsonl", bytes=len(content),
                      content=content)  # fmt: skip
        session.add(row)
        return row.id

    def purge_closed_before(self, cutoff: datetime) -> dict[str, int]:
        """Delete what the retention period is over for, in one transaction.

        Batches closed before ``cutoff`` go with their jobs and their output and error files; then files
        created before ``cutoff`` that no remaining batch names as its input (an open batch keeps its input).
        """
        with self._db.session() as session:
            batches = session.execute(text(
                "DELETE FROM batches WHERE status IN :closed "
                "AND coalesce(completed_at, cancelled_at, finalizing_at, created_at) < :cutoff "
                "RETURNING id, output_file_id, error_file_id").bindparams(bindparam("closed", expanding=True)),
                {"closed": list(_CLOSED), "cutoff": cutoff}).all()  # fmt: skip
            ids = [row.id for row in batches]
            outputs = [file_id for row in batches for file_id in (row.output_file_id, row.error_file_id) if file_id]
            jobs = files = 0
            if ids:
                jobs = session.execute(delete(JobRow).where(JobRow.batch_id.in_(ids))).rowcount or 0
            if outputs:
                files = session.execute(delete(FileRow).where(FileRow.id.in_(outputs))).rowcount or 0
            files += session.execute(text(
                "DELETE FROM files WHERE created_at < :cutoff "
                "AND NOT EXISTS (SELECT 1 FROM batches WHERE batches.input_file_id = files.id)"),
                {"cutoff": cutoff}).rowcount or 0  # fmt: skip
            return {"batches": len(ids), "batch_jobs": jobs, "files": files}
