"""The FastAPI application factory: routes, error handlers and the two small ASGI middlewares."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferhub import __version__
from inferhub.api import (
    admin_routes,
    anthropic_routes,
    batch_routes,
    generate_route,
    health_routes,
    jobs_routes,
    ollama_routes,
    openai_routes,
    rag_routes,
    responses_routes,
    tenancy_routes,
)
from inferhub.api.context import AppContext
from inferhub.api.nul_bytes import RefuseNulBytes
from inferhub.api.responses import ORJSONResponse
from inferhub.errors import REFUSED_VALUE_MESSAGE, APIError, PayloadTooLarge, ValueRefused
from inferhub.observability.http_metrics import HttpMetrics
from inferhub.observability.metrics import Metrics
from inferhub.observability.tracing import Tracing, TracingMiddleware
from inferhub.ui import STATIC_DIR as UI_STATIC_DIR
from inferhub.ui import routes as ui_routes

log = structlog.get_logger("inferhub.http")

# Routes that answer errors as Ollama does: {"error": "..."}.
_OLLAMA_PATHS = frozenset(
    f"/api/{name}" for name in ("chat", "generate", "embed", "embeddings", "tags", "version", "show", "ps", "pull")
)


def create_app(
    context: AppContext | None,
    *,
    max_body_bytes: int = 10 * 1024 * 1024,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    """The app over ``context``; with ``context=None`` the ``lifespan`` sets ``app.state.context`` at start-up."""
    app = FastAPI(
        title="Inferhub",
        version=context.version if context is not None else __version__,
        description="One OpenAI- and Ollama-compatible endpoint in front of your own models.",
        lifespan=lifespan,
    )
    app.state.context = context
    app.include_router(openai_routes.router)
    app.include_router(responses_routes.router)
    app.include_router(ollama_routes.router)
    app.include_router(anthropic_routes.router)
    app.include_router(generate_route.router)
    app.include_router(health_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(tenancy_routes.router)
    app.include_router(jobs_routes.router)
    app.include_router(batch_routes.router)
    app.include_router(rag_routes.router)
    app.include_router(ui_routes.router)
    app.mount("/ui/static", StaticFiles(directory=UI_STATIC_DIR), name="ui-static")
    _install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(RefuseNulBytes, ollama_paths=_OLLAMA_PATHS)
    if metrics is not None:
        app.state.metrics = metrics
        app.add_middleware(HttpMetrics, metrics=metrics)
    if tracing is not None:
        app.add_middleware(TracingMiddleware, tracing=tracing)
    app.add_middleware(RequestId, state=app.state)
    return app


def error_response(request: Request, status: int, body: dict, headers: dict[str, str] | None = None):
    if anthropic_routes.is_messages_path(request.url.path):
        return anthropic_routes.anthropic_error(status, body["error"]["message"], headers)
    if request.url.path in _OLLAMA_PATHS:
        return ORJSONResponse({"error": body["error"]["message"]}, status_code=status, headers=headers)
    return ORJSONResponse(body, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError):
        return error_response(request, exc.status_code, exc.openai_body(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path"))
        if not where:
            message = "the request body must be a JSON object (send Content-Type: application/json)"
            error = APIError(message, code="invalid_json")
        else:
            error = APIError(f"{where}: {first.get('msg', 'invalid value')}", param=where, code="invalid_value")
        return error_response(request, 400, error.openai_body())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            message, code = f"no route {request.method} {request.url.path}", "not_found"
        elif exc.status_code == 405:
            message, code = f"method {request.method} is not allowed on {request.url.path}", "method_not_allowed"
        else:
            message, code = str(exc.detail), "http_error"
        error = APIError(message, status_code=exc.status_code, code=code)
        return error_response(request, exc.status_code, error.openai_body(), getattr(exc, "headers", None))

    @app.exception_handler(ValueRefused)
    async def data_error(request: Request, exc: ValueRefused):
        # The last line of defence: a value PostgreSQL refuses (NUL byte, too long, out of range) is the
        # request's fault. The driver's message may quote the value (a credential): name only the kind.
        log.info("input_refused_by_database", path=request.url.path, reason=exc.reason)
        return error_response(request, 400, APIError(REFUSED_VALUE_MESSAGE, code="invalid_value").openai_body())

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        # Starlette answers this one outside every middleware (RequestId included): set the header here.
        request_id = request.headers.get("x-request-id", "")[:128]
        log.exception("unhandled_error", path=request.url.path)
        error = APIError(
            f"internal error (request id {request_id or 'unknown'}); the details are in the server log",
            status_code=500,
            code="internal_error",
        )
        error.error_type = "server_error"
        return error_response(request, 500, error.openai_body(), {"x-request-id": request_id} if request_id else None)


_CONNECTION_CLOSE = (b"connection", b"close")  # while draining: the client opens a new connection elsewhere


class RequestId:
    """Accept ``X-Request-ID`` or make one; return it and bind it to every log line of the request."""

    def __init__(self, app: ASGIApp, state: State | None = None) -> None:
        self.app = app
        self.state = state  # the app's: its ``context`` says whether we are draining (set by the lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:128]
                break
        if not request_id:
            request_id = uuid.uuid4().hex
            scope["headers"] = [*scope["headers"], (b"x-request-id", request_id.encode())]
        header = (b"x-request-id", request_id.encode("latin-1"))

        context: AppContext | None = getattr(self.state, "context", None)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [header, _CONNECTION_CLOSE] if context is not None and context.stopping else [header]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


class BodySizeLimit:
    """Refuse bodies over the limit with 413, by Content-Length or while reading a chunked body."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > limit:
                    await _send_too_large(scope, send, limit)
                    return
                break
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise PayloadTooLarge(_too_large_message(limit))
            return message

        await self.app(scope, limited_receive, send)


def _too_large_message(limit: int) -> str:
    return f"the request body is larger than the limit of {limit} bytes (INFERHUB_MAX_BODY_BYTES)"


async def _send_too_large(scope: Scope, send: Send, limit: int) -> None:
    message = _too_large_message(limit)
    status = 413
    if scope["path"] in _OLLAMA_PATHS:
        body = orjson.dumps({"error": message})
    elif anthropic_routes.is_messages_path(scope["path"]):
        status, body = anthropic_routes.anthropic_error_bytes(413, message)
    else:
        body = orjson.dumps(PayloadTooLarge(message).openai_body())
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
