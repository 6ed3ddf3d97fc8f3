"""HttpMetrics: ``llm_requests_total{endpoint,status}`` and ``llm_request_duration_seconds{endpoint}``.

A pure ASGI middleware. The endpoint label is the route's path template
(``/api/llm-backends/{backend_id}``), never the raw path, so labels stay few;
unmatched paths share ``unmatched``. Duration runs to the last body byte, so a
stream counts its whole length.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferhub.observability.metrics import Metrics

_SKIP = frozenset({"/metrics"})


class HttpMetrics:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _SKIP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_watch)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.request_duration.labels(endpoint).observe(time.perf_counter() - started)
