"""``GET /health``: the overall status for anyone; every component's state for a platform admin.

Without a key (load balancers, uptime checks) the answer is ``{"status": ...}`` and the status code
(200, or 503 when unhealthy): ports, PIDs, backend URLs and errors are internal. A platform admin's
key or session gets the details; a key that is not valid is a 401.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from starlette.responses import Response

from inferhub.api.context import context_of
from inferhub.api.principal import SESSION_COOKIE, admin_principal
from inferhub.api.responses import ORJSONResponse
from inferhub.errors import PermissionDenied

router = APIRouter(tags=["Health"])

PROBE_TIMEOUT = 3.0


def _shows_details(request: Request) -> bool:
    headers = request.headers
    if not (headers.get("authorization") or headers.get("x-api-key") or request.cookies.get(SESSION_COOKIE)):
        return False
    try:
        return admin_principal(request).is_platform
    except PermissionDenied:  # a valid key without the admin scope: the status only
        return False


@router.get("/health")
async def health(request: Request):
    context = context_of(request)
    details = _shows_details(request)
    names = list(context.health_checks)
    results = await asyncio.gather(
        *(asyncio.wait_for(context.health_checks[n](), PROBE_TIMEOUT) for n in names), return_exceptions=True
    )
    components = {}
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            components[name] = {"status": "unhealthy", "error": str(result) or type(result).__name__}
        else:
            components[name] = result
    backends = await _probe_backends(context)
    statuses = [c["status"] for c in components.values()]
    core_ok = components.get("database", {"status": "healthy"})["status"] == "healthy"
    in_rotation = [b for b in backends if b["status"] not in ("disabled", "draining")]
    if core_ok and all(s == "healthy" for s in statuses) and all(b["status"] == "healthy" for b in in_rotation):
        overall = "healthy"
    elif core_ok:
        overall = "degraded"
    else:
        overall = "unhealthy"
    status_code = 200 if overall != "unhealthy" else 503
    if not details:
        return ORJSONResponse({"status": overall}, status_code=status_code)
    admission = context.gateway.admission
    body = {
        "status": overall,
        "version": context.version,
        "components": components,
        "backends": backends,
        "queue": {"depth": admission.queue_depths(), "oldest_wait_seconds": admission.oldest_waits()},
    }
    return ORJSONResponse(body, status_code=status_code)


async def _probe_backends(context) -> list[dict]:
    """Backend health from the health monitor and circuit breakers (no extra probes), embedded ones live."""
    registry = context.registry
    live = context.gateway.stats.live
    out = []
    for backend in registry.backends:
        state = registry.states.get(backend.id)
        if not backend.enabled:
            status = "disabled"
        elif backend.draining:
            status = "draining"
        elif backend.backend_type == "embedded":
            status = "healthy" if await registry.adapter(backend).check_health() else "unhealthy"
        else:
            status = "healthy" if registry.usable(backend) else "unhealthy"
        entry = {
            "id": backend.id,
            "model": backend.model_name,
            "type": backend.backend_type,
            "endpoint_url": backend.endpoint_url,
            "enabled": backend.enabled,
            "status": status,
        }
        if state is not None and backend.backend_type != "embedded":
            entry["circuit"] = state.breaker.state.value
            entry["in_flight"] = state.in_flight
            if state.last_check_error:
                entry["error"] = state.last_check_error
        if backend.id in live:
            entry["stats"] = live[backend.id].public()
        out.append(entry)
    return out


@router.get("/health/live")
async def live():
    """The process is up and its event loop answers."""
    return ORJSONResponse({"status": "alive"})


@router.get("/health/ready")
async def ready(request: Request):
    """Ready for traffic: the database answers at the latest migration and a backend is in rotation.

    The reasons it is not are named for anyone (probes log them); the database's own error text, which may
    name hosts, only for a platform admin."""
    context = context_of(request)
    details = _shows_details(request)
    problems = ["stopping: draining before shutdown"] if context.stopping else []
    check = context.health_checks.get("database")
    if check is not None:
        try:
            state = await asyncio.wait_for(check(), PROBE_TIMEOUT)
            if state.get("status") != "healthy":
                problems.append("database: " + (state.get("error", "unhealthy") if details else "unhealthy"))
            elif state.get("migrations") not in (None, "current"):
                problems.append(f"database: migrations {state['migrations']}")
        except Exception as exc:
            problems.append(f"database: {exc or type(exc).__name__}" if details else "database: unreachable")
    registry = context.registry
    if not any(registry.usable(b) for b in registry.backends):
        problems.append("no backend is in rotation")
    if problems:
        return ORJSONResponse({"status": "not_ready", "problems": problems}, status_code=503)
    return ORJSONResponse({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request):
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is None:
        return ORJSONResponse({"error": {"message": "metrics are disabled", "type": "invalid_request_error",
                                         "code": "not_found"}}, status_code=404)  # fmt: skip
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)
