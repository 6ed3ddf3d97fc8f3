"""Jobs and batches: the list with filters, a job's details, cancelling. Tenant admins see their tenant's."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool

from inferhub.api.batch_wire import batch_object
from inferhub.api.context import AppContext
from inferhub.api.principal import Principal
from inferhub.errors import APIError, NotFound
from inferhub.ui.pages import (
    back,
    context_for,
    lenient_int,
    page_router,
    principal_of,
    read_form,
    render,
    visible_tenants,
)

router = page_router()

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")


def _jobs(context: AppContext):
    if context.jobs is None:
        raise APIError("jobs need the database", status_code=503, code="jobs_unavailable")
    return context.jobs


async def _tenant_ids(context: AppContext, principal: Principal, requested: int | None) -> list[int]:
    if not principal.is_platform:
        return [principal.scope_tenant(requested)]
    if requested is not None:
        return [requested]
    return [t.id for t in await run_in_threadpool(context.admin.tenants.list)]


@router.get("/jobs")
async def jobs_page(request: Request):
    principal = principal_of(request)
    context = context_for(request)
    status = request.query_params.get("status") or None
    if status not in (None, *JOB_STATUSES):
        status = None
    tenant_id = lenient_int(request.query_params.get("tenant_id"))
    jobs: list[dict] = []
    batches: list[dict] = []
    for tid in await _tenant_ids(context, principal, tenant_id):
        if context.jobs is not None:
            jobs += await run_in_threadpool(lambda t=tid: context.jobs.list(tenant_id=t, key_id=None, status=status,
                                                                           limit=100, after=None))  # fmt: skip
        if context.batches is not None:
            found = await run_in_threadpool(lambda t=tid: context.batches.list(tenant_id=t, key_id=0, limit=50,
                                                                              after=None))  # fmt: skip
            batches += [batch_object(batch) for batch in found]
    jobs.sort(key=lambda j: j.get("created_at") or 0, reverse=True)
    if status:
        batches = [b for b in batches if b.get("status") == status]
    tenants = await visible_tenants(context, principal)
    return render(request, "jobs.html", principal, jobs=jobs[:200], batches=batches, status=status,
                  statuses=JOB_STATUSES, tenants=tenants, tenant_id=tenant_id,
                  tenant_names={t.id: t.name for t in tenants})  # fmt: skip


async def _job(context: AppContext, principal: Principal, job_id: str) -> dict[str, Any]:
    """The job, if this admin may see it (another tenant's answers 404 like a missing one)."""
    job = await run_in_threadpool(_jobs(context).detail, job_id)
    if job is None or not principal.sees(job.get("tenant_id")):
        raise NotFound(f"no job {job_id}")
    return job


def _pretty(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _moment(value: str | None) -> str | None:
    return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S %Z").strip() if value else None


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str):
    principal = principal_of(request)
    context = context_for(request)
    job = await _job(context, principal, job_id)
    tenant = await run_in_threadpool(context.admin.tenants.get, job["tenant_id"]) if job["tenant_id"] else None
    started, finished = job.get("started_at"), job.get("finished_at")
    seconds = None
    if started and finished:
        seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    timeline = [("Created", _moment(job["created_at"])), ("Started", _moment(started)),
                ("Finished", _moment(finished))]  # fmt: skip
    if job["status"] == "queued" and job["attempts"]:
        timeline.append(("Next attempt after", _moment(job.get("run_after"))))
    return render(request, "job.html", principal, job=job, tenant=tenant, timeline=timeline, seconds=seconds,
                  body=_pretty(job.get("body")), result=_pretty(job.get("result")), error=_pretty(job.get("error")),
                  usage=job.get("usage") or {}, metadata=_pretty(job.get("metadata") or None))  # fmt: skip


@router.post("/jobs/{job_id}/cancel")
async def job_cancel(request: Request, job_id: str):
    principal = principal_of(request)
    context = context_for(request)
    await read_form(request)
    await _job(context, principal, job_id)
    await run_in_threadpool(_jobs(context).cancel, job_id)
    target = "/ui/jobs/" + job_id if request.query_params.get("from") == "details" else "/ui/jobs"
    return back(target, f"Job {job_id}: cancel requested.")


@router.post("/batches/{batch_id}/cancel")
async def batch_cancel(request: Request, batch_id: str):
    principal = principal_of(request)
    context = context_for(request)
    await read_form(request)
    batch = await run_in_threadpool(context.batches.get, batch_id)
    if batch is None or not principal.sees(batch.tenant_id):
        raise NotFound(f"no batch {batch_id}")
    await run_in_threadpool(context.batches.cancel, batch_id)
    return back("/ui/jobs", f"Batch {batch_id}: cancel requested.")
