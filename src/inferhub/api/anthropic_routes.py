"""Anthropic Messages API routes: ``POST /v1/messages``, ``POST /v1/messages/count_tokens``.

Parse, translate (``protocols.anthropic_messages``), hand the chat body to the one ``InferenceService``
(limits, fair queue, failover, usage, metrics and logs are its own), translate back. Errors on these
paths answer in Anthropic's shape (``anthropic_error``, used by app.py's handlers and the body-size
middleware); ``GET /v1/models`` answers in Anthropic's shape when the request carries
``anthropic-version`` (``anthropic_models``, called by the OpenAI route).

Authentication is the shared ``authenticate``: it already takes ``x-api-key`` beside ``Authorization``
on every route (the key cache is one), so an Anthropic client can list models or call chat with it too.
``anthropic-version``, ``anthropic-beta`` and ``?beta=true`` are accepted and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import orjson
import structlog
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from inferhub.api import inference
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, context_of
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import SSE_HEADERS
from inferhub.errors import APIError, ModelNotFound, PermissionDenied
from inferhub.gateway.pipeline import OpenStream
from inferhub.protocols import anthropic_messages as messages

log = structlog.get_logger("inferhub.anthropic")

router = APIRouter(prefix="/v1", tags=["Anthropic-compatible"])

ENDPOINT = "/v1/messages"  # the usage record's endpoint
PATH_PREFIX = "/v1/messages"
_PROMPT_COUNT_WAIT = 2.0  # seconds message_start waits for the prompt count done beside the engine


def is_messages_path(path: str) -> bool:
    """Paths whose errors are in Anthropic's shape."""
    return path == PATH_PREFIX or path.startswith(PATH_PREFIX + "/")


def anthropic_error(status: int, message: str, headers: dict[str, str] | None = None) -> ORJSONResponse:
    """An error as Anthropic answers it: its body, its status (503 → 529), the headers (``retry-after``)."""
    body = messages.error_body(status, message)
    return ORJSONResponse(body, status_code=messages.anthropic_status(status), headers=_lower(headers))


def anthropic_error_bytes(status: int, message: str) -> tuple[int, bytes]:
    """The same for an ASGI middleware that sends the bytes itself (the 413 of the body-size limit)."""
    return messages.anthropic_status(status), orjson.dumps(messages.error_body(status, message))


def _lower(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Anthropic's SDKs read ``retry-after``; HTTP headers are case-insensitive, so this only tidies."""
    return {k.lower(): v for k, v in headers.items()} if headers else None


@router.post("/messages", openapi_extra=body_schema("MessagesRequest"))
@inference.metered(ENDPOINT)
async def create_message(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    chat = messages.to_chat(body)
    model = chat["model"]
    if chat.get("stream"):
        opened = await inference.open_stream(request, "chat", chat, endpoint=ENDPOINT)
        return StreamingResponse(
            _events(opened.stream, model), media_type="text/event-stream", headers={**SSE_HEADERS, **opened.headers}
        )
    result = await inference.run(request, "chat", chat, endpoint=ENDPOINT)
    return ORJSONResponse(messages.from_chat(result.body, model), headers=result.headers)


@router.post("/messages/count_tokens", openapi_extra=body_schema("MessagesCountTokensRequest"))
async def count_tokens(request: Request):
    """The prompt counted as the pipeline counts it: exactly (tokenizer and chat template) where the engine's
    counter is local (the embedded llama.cpp), else estimated. Nothing is forwarded, nothing billed."""
    record = authenticate(request)
    body = await inference.read_body(request)
    chat = messages.count_tokens_body(body)
    context = context_of(request)
    name = context.registry.resolve(chat["model"])
    if not context.registry.candidates(name):
        raise ModelNotFound(
            f"The model '{chat['model']}' does not exist; GET /v1/models lists the available models", param="model"
        )
    if not record.allows_model(chat["model"]):
        raise PermissionDenied(f"API key {record.prefix}… may not use model '{chat['model']}'",
                               code="model_not_allowed", param="model")  # fmt: skip
    counted = await asyncio.to_thread(context.gateway.estimate_prompt_tokens, "chat", {**chat, "model": name})
    return ORJSONResponse(messages.count_tokens_result(counted))


def anthropic_models(request: Request) -> ORJSONResponse:
    """``GET /v1/models`` in Anthropic's shape, paged by ``limit``, ``after_id``, ``before_id``."""
    query = request.query_params
    raw_limit = query.get("limit", "20")
    if not raw_limit.lstrip("-").isdigit():
        raise APIError(f"limit: expected an integer, got {raw_limit!r}", param="limit", code="invalid_value")
    page = messages.models_page(
        context_of(request).registry.model_names(),
        limit=int(raw_limit),
        after_id=query.get("after_id"),
        before_id=query.get("before_id"),
    )
    return ORJSONResponse(page)


async def _events(stream: OpenStream, model: str) -> AsyncIterator[bytes]:
    """The chunks as Anthropic's events; a fault after the stream began is an ``error`` event."""
    translator = messages.MessagesStream(model, input_tokens=await _prompt_count(stream))
    try:
        for event in translator.start():
            yield messages.sse(event)
        async for chunk in stream.events:
            for event in translator.feed(chunk):
                yield messages.sse(event)
        for event in translator.finish():
            yield messages.sse(event)
    except APIError as exc:
        yield messages.sse(messages.stream_error(exc))
    except Exception as exc:  # never a traceback to the client; the log has it
        log.exception("messages_stream_failed")
        yield messages.sse(messages.stream_error(exc))


async def _prompt_count(stream: OpenStream) -> int:
    """The prompt tokens for ``message_start`` when they are counted beside the engine (a local counter);
    else 0 until the engine reports them (``message_delta`` carries the final usage)."""
    counted = stream.outcome.prompt_count
    if counted is None:
        return 0
    with contextlib.suppress(Exception):
        return await asyncio.wait_for(asyncio.shield(counted), _PROMPT_COUNT_WAIT)
    return 0
