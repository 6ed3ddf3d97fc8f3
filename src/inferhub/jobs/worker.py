"""JobWorker: claims jobs from PostgreSQL and runs them through the same InferenceService as live requests.

Jobs run at a lower priority than interactive traffic (``JOB_PRIORITY_OFFSET``):
when a backend is saturated, queued interactive requests get each freed slot
first, so batch work fills idle capacity. Each running job holds a lease it
renews; if its worker dies, the lease runs out and another worker takes the job
up again, up to the job's ``max_attempts``. Transient upstream errors are retried
with exponential backoff up to ``max_attempts``; then the job fails with the last
error. A job refused by a rate limit waits (``Retry-After``) without using up an
attempt; one refused by a budget, or whose key was revoked or expired, fails.
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

from inferhub.deferred.responses import RESPONSE_JOB_TYPE
from inferhub.errors import APIError, UpstreamError
from inferhub.gateway.limits import LimiterUnavailable, RateLimited
from inferhub.gateway.pipeline import RequestMeta
from inferhub.gateway.service import Call, InferenceService, Operation, RecordCapture, RequestInfo
from inferhub.jobs.webhooks import WebhookCourier
from inferhub.protocols import responses as responses_protocol
from inferhub.store.jobs import JOB_CHANNEL, JobRepository
from inferhub.tenancy.usage import UsageRecord

log = structlog.get_logger("inferhub.jobs")

JOB_PRIORITY_OFFSET = -50
CAPABILITY = {"chat.completions": "chat", "completions": "completions", "embeddings": "embeddings",
              RESPONSE_JOB_TYPE: "chat"}  # fmt: skip
RETENTION_INTERVAL_SECONDS = 600.0


class JobWorker:
    def __init__(self, repo: JobRepository, service: InferenceService, keys: Any, *, database_url: str,
                 signing_key: bytes, concurrency: int = 4, lease_seconds: float = 30.0,
                 retention_days: int = 30, metrics: Any = None, batches: Any = None,
                 load_key: Any = None, rag: Any = None, responses: Any = None) -> None:  # fmt: skip
        self.repo = repo
        # The same pipeline as live requests; each job's call hands its usage record back (``RecordCapture``)
        # instead of giving it to the shared usage writer. A job's one usage record is written by
        # ``repo.finish`` with its outcome, so a deferred attempt leaves none and a later success is not
        # shadowed by it.
        self.service = service
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
        self.responses = responses  # the ResponseRepository of "responses" jobs (background: true)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._slot_freed = asyncio.Event()
        self.webhooks = WebhookCourier(repo, signing_key, self.name)
        self._calls: dict[str, asyncio.Task[Any]] = {}

    async def run(self) -> None:
        loops = (self._listen(), self._reap_abandoned(), self.webhooks.run(), self._purge_expired())
        helpers = [asyncio.create_task(loop) for loop in loops]
        log.info("job_worker_started", worker=self.name, concurrency=self.concurrency)
        backoff = 0.5
        try:
            while True:
                free = self.concurrency - len(self._running)
                if free <= 0:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                self._wake.clear()
                try:
                    jobs = await asyncio.to_thread(self.repo.claim, self.name, self.lease_seconds, free)
                except Exception as exc:  # the database is away: keep the loop alive, try again with backoff
                    log.warning("job_claim_failed", worker=self.name, error=str(exc)[:300], retry_in=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
                    continue
                backoff = 0.5
                if not jobs:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=1.0)
                    continue
                for job in jobs:
                    task = asyncio.create_task(self._execute(job))
                    self._running[job["id"]] = task
                    task.add_done_callback(lambda _t, job_id=job["id"]: self._done(job_id))
        finally:
            for task in [*helpers, *self._running.values()]:
                task.cancel()
            await asyncio.gather(*helpers, *self._running.values(), return_exceptions=True)

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
                            call = self._calls.get(note.payload[len("cancel:") :])
                            if call is not None:
                                call.cancel()  # stops the upstream request; the job is then marked cancelled
                        else:
                            self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job_listener_disconnected", error=str(exc))
                await asyncio.sleep(1.0)

    async def _reap_abandoned(self) -> None:
        """Fail the jobs whose worker died on their last allowed attempt (a lease ran out once too often)."""
        while True:
            try:
                for job in await asyncio.to_thread(self.repo.fail_abandoned):
                    log.warning("job_abandoned", job=job["id"], status=job["status"], attempts=job["attempts"])
                    await self._after_finish(job)
            except Exception as exc:
                log.warning("job_reaping_failed", error=str(exc))
            await asyncio.sleep(max(1.0, self.lease_seconds / 3))

    async def _purge_expired(self) -> None:
        """Retention: finished jobs, closed batches with their files, and old files (at start, then every 10 min)."""
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=self.retention_days)
            try:
                jobs = await asyncio.to_thread(self.repo.purge_finished_before, cutoff)
                purged = {"jobs": jobs}
                if self.batches is not None:
                    purged |= await asyncio.to_thread(self.batches.purge_closed_before, cutoff)
                if any(purged.values()):
                    log.info("jobs_purged", before=cutoff.isoformat(), **purged)
            except Exception as exc:
                log.warning("job_purge_failed", error=str(exc))
            await asyncio.sleep(RETENTION_INTERVAL_SECONDS)

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
        except _Deferred as deferred:  # a rate limit: try again when it allows, this attempt does not count
            outcome = {"status": "queued", "error": _error_body(deferred.error), "retry_in": deferred.delay,
                       "refund_attempt": True}  # fmt: skip
            log.info("job_deferred", job=job_id, code=deferred.error.code, retry_in=round(deferred.delay, 2))
        except _Failed as failed:
            error = failed.error
            transient = isinstance(error, UpstreamError) and error.status_code in (502, 503, 504)
            outcome = self._retry_or_fail(job, _error_body(error), transient, failed.record)
        except Exception as exc:  # a fault of this worker (e.g. its database connection): retried like an upstream one
            log.exception("job_crashed", job=job_id)
            body = {"message": f"the worker failed running the job: {exc}"[:500], "code": "worker_error", "status": 500}
            outcome = self._retry_or_fail(job, body, True, None)
        finally:
            heartbeat.cancel()
            self._calls.pop(job_id, None)
        finished = await asyncio.to_thread(lambda: self.repo.finish(job_id, self.name, **outcome))
        log.info("job_finished", job=job_id, status=outcome["status"], attempts=job["attempts"],
                 recorded=finished is not None, error=(outcome.get("error") or {}).get("message"))  # fmt: skip
        if finished is not None and finished["status"] != "queued":
            await self._after_finish(finished)

    @staticmethod
    def _retry_or_fail(job: dict[str, Any], error: dict[str, Any], transient: bool, record: UsageRecord | None):
        if transient and job["attempts"] < job["max_attempts"]:
            return {"status": "queued", "error": error, "retry_in": min(300.0, 2.0 ** (job["attempts"] - 1))}
        return {"status": "failed", "error": error, "usage_record": record}

    async def _after_finish(self, job: dict[str, Any]) -> None:
        """A job reached its final state: its webhook is due now, its batch may be complete, its background
        response ends with it (a success completed it already; ``complete`` is a no-op on an ended one)."""
        if job["type"] == RESPONSE_JOB_TYPE and job["status"] != "succeeded":
            await self._end_response(job)
        if job.get("webhook_state") == "pending":
            self.webhooks.wake()
        batch_id = job.get("batch_id")
        if batch_id and self.batches is not None and await asyncio.to_thread(self.batches.finalize_if_done, batch_id):
            log.info("batch_finalized", batch=batch_id)

    async def _heartbeat(self, job_id: str, call: asyncio.Task[Any]) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            keep = await asyncio.to_thread(self.repo.renew, job_id, self.name, self.lease_seconds)
            if not keep:  # cancelled, or the lease went to another worker
                call.cancel()
                return

    async def _active_key(self, job: dict[str, Any]) -> Any:
        """The job's API key, as long as it may still be used: a revoked or expired key's jobs do not run."""
        key = self.keys.by_id(job["key_id"])
        if key is None and self.load_key is not None:
            key = await asyncio.to_thread(self.load_key, job["key_id"])
        if key is None:
            raise _Failed(APIError("the job's API key no longer exists", status_code=403, code="key_deleted"))
        if not key.active:
            reason = "revoked" if key.revoked_at is not None else "expired"
            raise _Failed(APIError(f"the job's API key {key.prefix}… has been {reason}; the job did not run",
                                   status_code=401, code=f"key_{reason}"))  # fmt: skip
        return key

    def _meta(self, key: Any, job: dict[str, Any]) -> RequestMeta:
        return RequestMeta(party=f"tenant:{key.tenant_id}" if key.tenant_id is not None else f"key:{key.id}",
                           priority=JOB_PRIORITY_OFFSET + max(-10, min(10, job["priority"])),
                           queue_timeout=600.0)  # fmt: skip

    def _job_call(self, key: Any, job: dict[str, Any], operation: Operation, body: dict[str, Any]) -> Call:
        return Call(self.service.caller(key), operation, body, f"/v1/jobs:{job['type']}",
                    info=RequestInfo(request_id=f"job:{job['id']}"), meta=self._meta(key, job))  # fmt: skip

    async def _call(self, job: dict[str, Any]):
        if job.get("cancel_requested"):
            raise asyncio.CancelledError
        key = await self._active_key(job)
        body = dict(job["body"])
        body.pop("stream", None)
        if job["type"] == "rag.ingest":
            return await self._ingest(job, key, body)
        stored = await self._start_response(job) if job["type"] == RESPONSE_JOB_TYPE else None
        capture = RecordCapture()
        try:
            call = self._job_call(key, job, CAPABILITY[job["type"]], body)  # type: ignore[arg-type]
            done = await self.service.with_sink(capture).call(call)
        except APIError as exc:
            raise _refused_or_failed(exc, capture.take()) from None
        if stored is not None:
            await self._complete_response(stored, done.body)
        return done.body, capture.take()

    # -- background responses (POST /v1/responses with background: true) ---------------------------

    def _response_id(self, job: dict[str, Any]) -> str:
        if self.responses is None:
            raise _Failed(APIError("stored responses are not available on this worker", status_code=503,
                                   code="responses_unavailable"))  # fmt: skip
        return (job.get("metadata") or {})["response_id"]

    async def _start_response(self, job: dict[str, Any]) -> Any:
        """The response becomes in_progress; one cancelled (or deleted) meanwhile stops the job."""
        stored = await self.responses.set_status(self._response_id(job), "in_progress")
        if stored is None:
            raise asyncio.CancelledError
        return stored

    async def _complete_response(self, stored: Any, result: dict[str, Any]) -> None:
        created_at = (stored.response or {}).get("created_at") or stored.created_at.timestamp()
        response = responses_protocol.from_chat(result, stored.request, stored.id, created_at)
        await self.responses.complete(stored.id, response)

    async def _end_response(self, job: dict[str, Any]) -> None:
        """A failed or cancelled job's response ends failed or cancelled, with the job's error."""
        if self.responses is None or not (job.get("metadata") or {}).get("response_id"):
            return
        response_id = job["metadata"]["response_id"]
        try:
            tenant_id = job.get("tenant_id")
            key_id = job.get("key_id") if tenant_id is None else None
            stored = await self.responses.get(response_id, tenant_id, key_id=key_id)
            if stored is None or stored.finished:
                return  # already ended (cancelled through the API, say) or deleted
            error = job.get("error") or {}
            final = dict(stored.response or {})
            if job["status"] == "failed":
                final["error"] = {"code": error.get("code") or "server_error", "message": error.get("message") or ""}
            await self.responses.complete(response_id, final, "failed" if job["status"] == "failed" else "cancelled")
        except Exception as exc:  # the job has its outcome; the response is left as it was, and logged
            log.warning("response_end_failed", response=response_id, error=str(exc)[:300])

    async def _ingest(self, job: dict[str, Any], key: Any, body: dict[str, Any]):
        """Document ingestion: embeddings through the pipeline, metered as one request of the embedding model."""
        if self.rag is None:
            raise _Failed(APIError("RAG is not available on this worker", status_code=503, code="rag_unavailable"))
        capture = RecordCapture()
        try:
            async with self.service.with_sink(capture).metered(self._job_call(key, job, "ingestion", body)) as work:
                try:
                    result = await self.rag.ingest(body["document_id"], work.meta)
                except LookupError as exc:
                    raise _Failed(APIError(str(exc), status_code=404, code="document_not_found")) from None
                except APIError:
                    raise
                except Exception as exc:  # an unreadable document: the job fails with the reason
                    raise _Failed(APIError(f"could not ingest the document: {exc}"[:500], status_code=422,
                                           code="document_unreadable")) from None  # fmt: skip
                work.served_model, work.prompt_tokens = body["model"], result["embedding_tokens"]
        except APIError as exc:
            raise _refused_or_failed(exc, capture.take()) from None
        return result, capture.take()


def _refused_or_failed(error: APIError, record: UsageRecord | None) -> Exception:
    """A rate limit (or an unreachable limiter) defers the job without using up an attempt; a spent budget,
    a model the key may not use or an upstream error fails this attempt, with its usage record."""
    if isinstance(error, RateLimited | LimiterUnavailable) and error.code != "budget_exceeded":
        return _Deferred(error, _retry_after(error))
    return _Failed(error, record)


def _error_body(error: APIError) -> dict[str, Any]:
    return {"message": error.message, "code": error.code, "status": error.status_code}


def _retry_after(error: APIError) -> float:
    """The refusal's ``Retry-After`` (seconds), within 1 s … 1 h."""
    try:
        seconds = float(error.headers.get("Retry-After", "5"))
    except ValueError:
        seconds = 5.0
    return max(1.0, min(3600.0, seconds))


class _Deferred(Exception):
    def __init__(self, error: APIError, delay: float) -> None:
        super().__init__(error.message)
        self.error = error
        self.delay = delay


class _Failed(Exception):
    def __init__(self, error: APIError, record: Any = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.record = record
