"""JobWorker: claims jobs from PostgreSQL and runs them through the same pipeline as live requests.

Jobs run at a lower priority than interactive traffic (``JOB_PRIORITY_OFFSET``):
when a backend is saturated, queued interactive requests get each freed slot
first, so batch work fills idle capacity. Each running job holds a lease it
renews; if its worker dies, the lease runs out and another worker takes the job
up again. Transient upstream errors are retried with exponential backoff up to
the job's ``max_attempts``; then it fails with the last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import structlog

from inferhub.errors import APIError, UpstreamError
from inferhub.gateway.pipeline import Gateway, RequestMeta
from inferhub.jobs.webhooks import deliver, webhook_secret
from inferhub.store.jobs import JOB_CHANNEL, JobRepository

log = structlog.get_logger("inferhub.jobs")

JOB_PRIORITY_OFFSET = -50
CAPABILITY = {"chat.completions": "chat", "completions": "completions", "embeddings": "embeddings"}


class JobWorker:
    def __init__(self, repo: JobRepository, gateway: Gateway, meter: Any, keys: Any, *, database_url: str,
                 signing_key: bytes, concurrency: int = 4, lease_seconds: float = 30.0,
                 retention_days: int = 30, metrics: Any = None, batches: Any = None,
                 load_key: Any = None, rag: Any = None) -> None:  # fmt: skip
        self.repo = repo
        self.gateway = gateway
        self.meter = meter
        self.keys = keys
        self.database_url = database_url
        self.signing_key = signing_key
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.retention_days = retention_days
        self.metrics = metrics
        self.batches = batches
        self.load_key = load_key  # a key created a moment ago may not be in the cache yet
        self.rag = rag  # handles "rag.ingest" jobs
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._slot_freed = asyncio.Event()
        self._deliveries: dict[str, asyncio.Task[None]] = {}
        self._calls: dict[str, asyncio.Task[Any]] = {}

    async def run(self) -> None:
        listener = asyncio.create_task(self._listen())
        housekeeping = asyncio.create_task(self._housekeeping())
        log.info("job_worker_started", worker=self.name, concurrency=self.concurrency)
        try:
            while True:
                free = self.concurrency - len(self._running)
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                self._wake.clear()
                jobs = await asyncio.to_thread(self.repo.claim, self.name, self.lease_seconds, free)
                if not jobs:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    continue
                for job in jobs:
                    task = asyncio.create_task(self._execute(job))
                    self._running[job["id"]] = task
                    task.add_done_callback(lambda _t, job_id=job["id"]: self._done(job_id))
        finally:
            listener.cancel()
            housekeeping.cancel()
            for task in list(self._running.values()):
                task.cancel()
            await asyncio.gather(*self._running.values(), listener, housekeeping, return_exceptions=True)

    def _done(self, job_id: str) -> None:
        self._running.pop(job_id, None)
        self._slot_freed.set()

    async def _listen(self) -> None:
        """Wake on new jobs and stop running jobs whose cancellation was asked for."""
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {JOB_CHANNEL}")
                    async for note in conn.notifies():
                        if note.payload.startswith("cancel:"):
                            call = self._calls.get(note.payload[len("cancel:"):])
                            if call is not None:
                                call.cancel()  # stops the upstream request; the job is then marked cancelled
                        else:
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job_listener_disconnected", error=str(exc))
                await asyncio.sleep(1.0)

    async def _housekeeping(self) -> None:
        while True:
            try:
                for job in await asyncio.to_thread(self.repo.pending_webhooks):
                    self._start_delivery(job)
                cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
                removed = await asyncio.to_thread(self.repo.purge_finished_before, cutoff)
                if removed:
                    log.info("jobs_purged", removed=removed)
            except Exception as exc:
                log.warning("job_housekeeping_failed", error=str(exc))
            await asyncio.sleep(30)

    async def _execute(self, job: dict[str, Any]) -> None:
        job_id = job["id"]
        structlog.contextvars.bind_contextvars(job_id=job_id)
        call = asyncio.create_task(self._call(job))
        self._calls[job_id] = call
        heartbeat = asyncio.create_task(self._heartbeat(job_id, call))
        outcome: dict[str, Any]
        try:
            result, record = await call
            outcome = {"status": "succeeded", "result": result, "usage": result.get("usage"), "usage_record": record}
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():  # the worker itself is stopping: hand the job back
                heartbeat.cancel()
                call.cancel()
                await asyncio.shield(asyncio.to_thread(self.repo.release, job_id, self.name))
                log.info("job_released", job=job_id)
                raise
            outcome = {"status": "cancelled", "error": {"message": "cancelled while running", "code": "cancelled"}}
        except _Failed as failed:
            error = failed.error
            body = {"message": error.message, "code": error.code, "status": error.status_code}
            transient = isinstance(error, UpstreamError) and error.status_code in (502, 503, 504)
            if transient and job["attempts"] < job["max_attempts"]:
                delay = min(300.0, 2.0 ** (job["attempts"] - 1))
                outcome = {"status": "queued", "error": body, "retry_in": delay}
            else:
                outcome = {"status": "failed", "error": body, "usage_record": failed.record}
        finally:
            heartbeat.cancel()
            self._calls.pop(job_id, None)
        finished = await asyncio.to_thread(lambda: self.repo.finish(job_id, self.name, **outcome))
        log.info("job_finished", job=job_id, status=outcome["status"], attempts=job["attempts"],
                 recorded=finished is not None, error=(outcome.get("error") or {}).get("message"))  # fmt: skip
        if finished is not None and finished.get("webhook_state") == "pending":
            self._start_delivery(finished)
        batch_id = finished.get("batch_id") if finished is not None else None
        if batch_id and self.batches is not None and await asyncio.to_thread(self.batches.finalize_if_done, batch_id):
            log.info("batch_finalized", batch=batch_id)

    def _start_delivery(self, job: dict[str, Any]) -> None:
        if job["id"] in self._deliveries:  # already being delivered by this process
            return
        task = asyncio.create_task(self._send_webhook(job))
        self._deliveries[job["id"]] = task
        task.add_done_callback(lambda _t, job_id=job["id"]: self._deliveries.pop(job_id, None))

    async def _heartbeat(self, job_id: str, call: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            keep = await asyncio.to_thread(self.repo.renew, job_id, self.name, self.lease_seconds)
            if not keep:  # cancelled, or the lease went to another worker
                call.cancel()
                return

    async def _call(self, job: dict[str, Any]):
        if job.get("cancel_requested"):
            raise asyncio.CancelledError
        key = self.keys.by_id(job["key_id"])
        if key is None and self.load_key is not None:
            key = await asyncio.to_thread(self.load_key, job["key_id"])
        if key is None:
            raise _Failed(APIError("the job's API key no longer exists", status_code=403, code="key_deleted"))
        body = dict(job["body"])
        body.pop("stream", None)
        if job["type"] == "rag.ingest":
            return await self._ingest(job, key, body)
        capability = CAPABILITY[job["type"]]
        ticket = await self.meter.begin(key, endpoint=f"/v1/jobs:{job['type']}", model=body["model"],
                                        request_id=f"job:{job['id']}") if self.meter else None  # fmt: skip
        meta = RequestMeta(party=f"tenant:{key.tenant_id}" if key.tenant_id is not None else f"key:{key.id}",
                           priority=JOB_PRIORITY_OFFSET + max(-10, min(10, job["priority"])),
                           queue_timeout=600.0)  # fmt: skip
        try:
            routed, result = await self.gateway.run(capability, body, meta)  # type: ignore[arg-type]
        except APIError as exc:
            record = await self.meter.settle(ticket, status=exc.status_code) if ticket else None
            raise _Failed(exc, record) from None
        used = result.get("usage") or {}
        record = None
        if ticket is not None:
            record = await self.meter.settle(
                ticket, status=200, served_model=routed.served_model, backend=routed.backend.id,
                prompt_tokens=used.get("prompt_tokens", 0) or 0,
                completion_tokens=used.get("completion_tokens", 0) or 0,
            )  # fmt: skip
        return result, record

    async def _ingest(self, job: dict[str, Any], key: Any, body: dict[str, Any]):
        """Document ingestion: embeddings through the pipeline, metered as one request of the embedding model."""
        if self.rag is None:
            raise _Failed(APIError("RAG is not available on this worker", status_code=503, code="rag_unavailable"))
        ticket = await self.meter.begin(key, endpoint="/v1/jobs:rag.ingest", model=body["model"],
                                        request_id=f"job:{job['id']}") if self.meter else None  # fmt: skip
        meta = RequestMeta(party=f"tenant:{key.tenant_id}" if key.tenant_id is not None else f"key:{key.id}",
                           priority=JOB_PRIORITY_OFFSET, queue_timeout=600.0)  # fmt: skip
        try:
            result = await self.rag.ingest(body["document_id"], meta)
        except APIError as exc:
            record = await self.meter.settle(ticket, status=exc.status_code) if ticket else None
            raise _Failed(exc, record) from None
        except LookupError as exc:
            raise _Failed(APIError(str(exc), status_code=404, code="document_not_found")) from None
        except Exception as exc:  # an unreadable document: the job fails with the reason
            raise _Failed(APIError(f"could not ingest the document: {exc}"[:500], status_code=422,
                                   code="document_unreadable")) from None  # fmt: skip
        record = None
        if ticket is not None:
            record = await self.meter.settle(ticket, status=200, served_model=body["model"],
                                             prompt_tokens=result["embedding_tokens"])  # fmt: skip
        return result, record

    async def _send_webhook(self, job: dict[str, Any]) -> None:
        secret = webhook_secret(self.signing_key, job["tenant_id"], job["key_id"])
        public = {k: v for k, v in job.items() if k not in ("tenant_id", "key_id")}
        delivered, attempts = await deliver(job["webhook_url"], public, secret)
        await asyncio.to_thread(lambda: self.repo.webhook_done(job["id"], delivered=delivered, attempts=attempts))


class _Failed(Exception):
    def __init__(self, error: APIError, record: Any = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.record = record
