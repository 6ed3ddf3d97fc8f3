"""The inference routes' adapter: a ``Request`` becomes a ``Call`` for the one ``InferenceService``.

The OpenAI, Ollama and ``/generate`` routes parse and shape; the pipeline (allow-list, limits, fair
queue, routing, forwarding, usage) is the service's. Here the request's caller (resolved once, at
authentication), its metadata and a watch that cancels the forward when the client leaves go into
the ``Call``. ``metered`` wraps those routes so that a request refused before it reached the service
(bad input, a missing scope, a body over the size limit) still leaves its usage record once its key
is known.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request

from inferhub.api import validation
from inferhub.api._disconnect import unless_client_leaves
from inferhub.api.context import authenticated, context_of, request_info
from inferhub.backends.base import Capability
from inferhub.errors import APIError
from inferhub.gateway.service import Call, Result, StreamResult

Route = Callable[[Request], Awaitable[Any]]


def metered(endpoint: str) -> Callable[[Route], Route]:
    """Decorate an inference route: an error raised before the service saw the request is recorded too."""

    def decorate(route: Route) -> Route:
        @functools.wraps(route)
        async def wrapper(request: Request) -> Any:
            try:
                return await route(request)
            except APIError as exc:
                await _record_refusal(request, endpoint, exc)
                raise

        return wrapper

    return decorate


async def _record_refusal(request: Request, endpoint: str, exc: APIError) -> None:
    known = authenticated(request)  # the key, even if it lacked the scope
    if known is None or known.metered:
        return  # no key to bill it to, or the service has recorded it already
    model = known.body.get("model") if known.body is not None else None
    await context_of(request).service.refused(known.caller, endpoint=endpoint,
                                              model=model if isinstance(model, str) else "",
                                              status=exc.status_code, info=request_info(request))  # fmt: skip


async def read_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, remembered for the usage record of a request refused by validation."""
    body = validation.parse_json_object(await request.body())
    known = authenticated(request)
    if known is not None:
        known.body = body
    return body


def call_of(request: Request, operation: Capability, body: dict[str, Any], *, endpoint: str,
            watch: bool = False) -> Call:  # fmt: skip
    """The request as a ``Call``; from here on the service records it, refused (429, 403) or not."""
    known = authenticated(request)
    if known is None:
        raise RuntimeError("authenticate(request) must run before the request is handed to the service")
    known.metered = True
    return Call(known.caller, operation, body, endpoint, info=request_info(request),
                watch=functools.partial(unless_client_leaves, request) if watch else None)  # fmt: skip


async def run(request: Request, capability: Capability, body: dict[str, Any], *, endpoint: str) -> Result:
    """Non-streaming: the upstream call is cancelled (a 499, the prompt billed) if the client leaves."""
    return await context_of(request).service.call(call_of(request, capability, body, endpoint=endpoint, watch=True))


async def open_stream(request: Request, capability: Capability, body: dict[str, Any], *, endpoint: str,
                      ) -> StreamResult:  # fmt: skip
    """Streaming: the stream's events are wrapped so the usage record is written when it ends."""
    return await context_of(request).service.stream(call_of(request, capability, body, endpoint=endpoint))
