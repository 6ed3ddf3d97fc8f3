"""Jobs API: hand work over, get an id, come back for the result (``jobs`` scope).

``POST /v1/jobs`` commits the job to PostgreSQL before answering 202; an
``Idempotency-Key`` header makes a retried submission return the same job.
A key sees the jobs of its tenant (or its own, without a tenant).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from inferhub.api import validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, context_of
from inferhub.api.responses import ORJSONResponse
from inferhub.deferred.records import JOB_TYPES
from inferhub.errors import APIError, InvalidRequest, NotFound
from inferhub.jobs.webhooks import webhook_secret
from inferhub.tenancy.keys import KeyRecord

router = APIRouter(prefix="/v1", tags=["Jobs"])

_CHECKS = {"chat.completions": validation.check_chat, "completions": validation.check_completion,
           "embeddings": validation.check_embeddings}  # fmt: skip
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _jobs(request: Request):
    context = context_of(request)
    if context.jobs is None:
        raise APIError("jobs need the database", status_code=503, code="jobs_unavailable")
    return context.jobs


def owns(record: KeyRecord, tenant_id: int | None, key_id: int | None) -> bool:
    """A key sees its tenant's jobs, batches and files; a key without a tenant, its own."""
    if record.tenant_id is not None:
        return tenant_id == record.tenant_id
    return tenant_id is None and (key_id == record.id or "admin" in record.scopes)


def _visible(record: KeyRecord, job: dict[str, Any] | None) -> dict[str, Any]:
    if job is None or not owns(record, job["tenant_id"], job["key_id"]):
        raise NotFound("no such job", code="job_not_found")
    return {k: v for k, v in job.items() if k not in ("tenant_id", "key_id", "batch_id")}


@router.post("/jobs", status_code=202, openapi_extra=body_schema("JobRequest"))
async def submit(request: Request):
    record = authenticate(request, scope="jobs")
    body = validation.parse_json_object(await request.body())
    job_type = body.get("type")
    if job_type not in JOB_TYPES:
        raise InvalidRequest(f"type: expected one of {', '.join(JOB_TYPES)}, got {job_type!r}", param="type")
    inner = body.get("body")
    if not isinstance(inner, dict):
        raise InvalidRequest("body: expected the request body of the synchronous endpoint (an object)", param="body")
    try:
        _CHECKS[job_type](inner)
    except InvalidRequest as exc:
        exc.message, exc.param = f"body.{exc.message}", f"body.{exc.param}" if exc.param else "body"
        raise
    if inner.get("stream"):
        raise InvalidRequest("body.stream: jobs do not stream; omit it", param="body.stream")
    context = context_of(request)
    if not context.registry.candidates(inner["model"]):
        raise InvalidRequest(f"body.model: the model '{inner['model']}' does not exist", param="body.model",
                             code="model_not_found")  # fmt: skip
    if not record.allows_model(inner["model"]):
        raise APIError(f"API key {record.prefix}… may not use model '{inner['model']}'", status_code=403,
                       code="model_not_allowed", param="body.model")  # fmt: skip
    priority = body.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not -10 <= priority <= 10:
        raise InvalidRequest("priority: expected an integer from -10 to 10", param="priority")
    webhook = body.get("webhook_url")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("http://", "https://"))):
        raise InvalidRequest("webhook_url: expected an http:// or https:// URL", param="webhook_url")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata: expected an object", param="metadata")
    idempotency = request.headers.get("idempotency-key")
    job, created = await run_in_threadpool(lambda: _jobs(request).submit(
        tenant_id=record.tenant_id, key_id=record.id, type=job_type, body=inner, priority=priority,
        webhook_url=webhook, metadata=metadata, idempotency_key=idempotency, max_attempts=context.job_max_attempts,
    ))  # fmt: skip
    return ORJSONResponse(_visible(record, job), status_code=202 if created else 200)


@router.get("/jobs/webhook-secret")
async def secret(request: Request):
    """The secret that signs this key's (or its tenant's) webhook deliveries."""
    record = authenticate(request, scope="jobs")
    return ORJSONResponse({"secret": webhook_secret(context_of(request).signing_key, record.tenant_id, record.id)})


@router.get("/jobs/{job_id}")
async def get_job(request: Request, job_id: str):
    record = authenticate(request, scope="jobs")
    return ORJSONResponse(_visible(record, await run_in_threadpool(_jobs(request).get, job_id)))


@router.get("/jobs")
async def list_jobs(
    request: Request,
    status: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
    after: str | None = None,
):
    record = authenticate(request, scope="jobs")
    if status is not None and status not in STATUSES:
        raise InvalidRequest(f"status: expected one of {', '.join(STATUSES)}", param="status")
    rows = await run_in_threadpool(lambda: _jobs(request).list(
        tenant_id=record.tenant_id, key_id=record.id, status=status, limit=limit + 1, after=after))  # fmt: skip
    page = [_visible(record, job) for job in rows[:limit]]
    return ORJSONResponse({"object": "list", "data": page, "has_more": len(rows) > limit,
                           "last_id": page[-1]["id"] if page else None})  # fmt: skip


@router.post("/jobs/{job_id}/cancel")
async def cancel_job(request: Request, job_id: str):
    record = authenticate(request, scope="jobs")
    repo = _jobs(request)
    _visible(record, await run_in_threadpool(repo.get, job_id))
    job = await run_in_threadpool(repo.cancel, job_id)
    return ORJSONResponse(_visible(record, job))
