"""Every inference route goes through here: meter (allow-list, limits) → pipeline → meter (usage, cost).

Keeps the OpenAI, Ollama and ``/generate`` routes to parsing and shaping only. ``metered``
wraps those routes so that a request refused before it reached the meter (bad input, a
missing scope, a body over the size limit) still leaves its usage record once its key
is known.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from fastapi import Request

from inferhub.api.context import context_of, request_meta, routing_headers
from inferhub.api.disconnect import ClientDisconnected, unless_client_leaves
from inferhub.backends.base import Capability, StreamEvent
from inferhub.errors import APIError
from inferhub.gateway.metering import Ticket
from inferhub.gateway.pipeline import OpenStream, Routed


async def _begin(request: Request, model: str, endpoint: str) -> Ticket | None:
    meter = context_of(request).meter
    key = getattr(request.state, "key", None)
    if meter is None or key is None:
        return None
    client = request.client.host if request.client else None
    request.state.metered = True  # from here on the meter records the request, refused (429, 403) or not
    return await meter.begin(key, endpoint=endpoint, model=model, client_ip=client, request_bytes=_size(request))


def _size(request: Request) -> int:
    length = request.headers.get("content-length") or ""
    return int(length) if length.isdigit() else 0


Route = Callable[[Request], Awaitable[Any]]


def metered(endpoint: str) -> Callable[[Route], Route]:
    """Decorate an inference route: an error raised before the meter saw the request is recorded too."""

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
    meter = context_of(request).meter
    key = getattr(request.state, "caller", None)  # the key, even if it lacked the scope
    if meter is None or key is None or getattr(request.state, "metered", False):
        return  # no key to bill it to, or the meter has recorded it already
    body = getattr(request.state, "body", None)
    model = body.get("model") if isinstance(body, dict) else None
    client = request.client.host if request.client else None
    await meter.refused(key, endpoint=endpoint, model=model if isinstance(model, str) else "",
                        status=exc.status_code, client_ip=client, request_bytes=_size(request))  # fmt: skip


def _prompt_of(body: dict[str, Any]) -> Any:
    return body.get("messages", body.get("prompt", body.get("input")))


async def run(request: Request, capability: Capability, body: dict[str, Any], *, endpoint: str,
              ) -> tuple[Routed, dict[str, Any], dict[str, str]]:  # fmt: skip
    """Non-streaming: returns the routed backend, the OpenAI-shaped result and the response headers."""
    context = context_of(request)
    ticket = await _begin(request, body["model"], endpoint)
    try:
        routed, result = await unless_client_leaves(
            request, context.gateway.run(capability, body, request_meta(request))
        )
    except ClientDisconnected as exc:  # the upstream call was cancelled: bill the prompt, as a dropped stream
        if ticket is not None:
            prompt_tokens = context.gateway.estimate_prompt_tokens(capability, body)
            await context.meter.finish(ticket, status=exc.status_code, prompt_tokens=prompt_tokens,
                                       prompt=_prompt_of(body))  # fmt: skip
        raise
    except APIError as exc:
        if ticket is not None:
            await context.meter.finish(ticket, status=exc.status_code)
            exc.headers = {**ticket.headers, **exc.headers}
        raise
    except BaseException:
        if ticket is not None:
            await context.meter.finish(ticket, status=499)  # the client went away
        raise
    headers = routing_headers(routed)
    if ticket is not None:
        used = result.get("usage") or {}
        choices = result.get("choices") or [{}]
        completion = (choices[0].get("message") or {}).get("content") or choices[0].get("text")
        await context.meter.finish(
            ticket, status=200, served_model=routed.served_model, backend=routed.backend.id,
            prompt_tokens=used.get("prompt_tokens", 0) or 0, completion_tokens=used.get("completion_tokens", 0) or 0,
            prompt=_prompt_of(body), completion=completion, response_bytes=len(orjson.dumps(result)),
        )  # fmt: skip
        headers.update(ticket.headers)
    return routed, result, headers


async def open_stream(request: Request, capability: Capability, body: dict[str, Any], *, endpoint: str,
                      ) -> tuple[OpenStream, dict[str, str]]:  # fmt: skip
    """Streaming: the stream's events are wrapped so the usage record is written when it ends."""
    context = context_of(request)
    ticket = await _begin(request, body["model"], endpoint)
    try:
        stream = await context.gateway.open_stream(capability, body, request_meta(request))
    except APIError as exc:
        if ticket is not None:
            await context.meter.finish(ticket, status=exc.status_code)
            exc.headers = {**ticket.headers, **exc.headers}
        raise
    except BaseException:
        if ticket is not None:
            await context.meter.finish(ticket, status=499)
        raise
    headers = routing_headers(stream.routed)
    if ticket is not None:
        headers.update(ticket.headers)
        stream.events = _metered(request, stream, stream.events, ticket, body)
    return stream, headers


async def _metered(request: Request, stream: OpenStream, upstream: AsyncIterator[StreamEvent], ticket: Ticket,
                   body: dict[str, Any]) -> AsyncIterator[StreamEvent]:  # fmt: skip
    meter = context_of(request).meter
    keep_text = ticket.tenant is not None and ticket.tenant.store_payloads
    text: list[str] = []
    status = 499
    size = 0
    try:
        async for event in upstream:
            size += len(event.raw) if event.raw is not None else len(orjson.dumps(event.data))
            if keep_text:
                for choice in event.data.get("choices") or ():
                    piece = (choice.get("delta") or {}).get("content") or choice.get("text")
                    if piece:
                        text.append(piece)
            yield event
        status = 200
    except APIError as exc:
        status = exc.status_code
        raise
    finally:
        outcome = stream.outcome
        if status != 200:
            outcome.count_unreported()  # dropped or broken before the engine reported usage
        await meter.finish(
            ticket, status=status, served_model=stream.routed.served_model, backend=stream.backend.id,
            prompt_tokens=outcome.prompt_tokens, completion_tokens=outcome.completion_tokens,
            ttft=outcome.extra.get("ttft"), prompt=_prompt_of(body), completion="".join(text) if keep_text else None,
            response_bytes=size,
        )  # fmt: skip
