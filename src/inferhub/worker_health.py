"""The HTTP side of ``inferhub worker``: probes and metrics on ``INFERHUB_WORKER_HEALTH_PORT``.

The worker serves no API. With the port set it answers, for Kubernetes probes, load balancers and
Prometheus:

* ``GET /health/live``: the process answers and its job loop has not stopped. The loop does not
  restart by itself once it has ended (an unexpected error, the database gone at the wrong moment),
  so a stopped loop is a reason to restart the process, which is what a failing liveness probe does.
* ``GET /health/ready``: the database answers and the job loop is running.
* ``GET /metrics``: the worker's own registry in the Prometheus text format: ``llm_jobs``, the upstream
  metrics of the calls its jobs make (inference time, tokens, errors, retries), usage and RAG ingestion.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from inferhub.observability.metrics import Metrics

PROBE_TIMEOUT = 3.0

DatabaseCheck = Callable[[], Awaitable[dict]]


def create_worker_health_app(*, database: DatabaseCheck, job_loop: asyncio.Task, metrics: Metrics) -> Starlette:
    """The probe and metrics app of one worker process: ``job_loop`` is the task running ``JobWorker.run``."""

    async def live(request: Request) -> Response:
        problem = _loop_problem(job_loop)
        if problem:
            return JSONResponse({"status": "dead", "problems": [problem]}, status_code=503)
        return JSONResponse({"status": "alive"})

    async def ready(request: Request) -> Response:
        problems = []
        if problem := _loop_problem(job_loop):
            problems.append(problem)
        try:
            state = await asyncio.wait_for(database(), PROBE_TIMEOUT)
        except Exception as exc:
            problems.append(f"database: {str(exc)[:200] or type(exc).__name__}")
            state = None
        if problems:
            return JSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
        return JSONResponse({"status": "ready", "migrations": state.get("migrations") if state else None})

    async def scrape(request: Request) -> Response:
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    return Starlette(routes=[
        Route("/health/live", live, methods=["GET"]),
        Route("/health/ready", ready, methods=["GET"]),
        Route("/metrics", scrape, methods=["GET"]),
    ])  # fmt: skip


def _loop_problem(job_loop: asyncio.Task) -> str | None:
    if not job_loop.done():
        return None
    if job_loop.cancelled():
        return "job loop: cancelled"
    error = job_loop.exception()
    return f"job loop: stopped ({type(error).__name__}: {str(error)[:200]})" if error else "job loop: stopped"
