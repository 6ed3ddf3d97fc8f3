"""OpenAI-compatible routes: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``, ``/v1/models``."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from inferhub.api import anthropic_routes, inference, validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, context_of
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import SSE_HEADERS, openai_sse

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])


@router.post("/chat/completions", openapi_extra=body_schema("ChatCompletionRequest"))
@inference.metered("/v1/chat/completions")
async def chat_completions(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    validation.check_chat(body)
    if body.get("collections") is not None:  # RAG without client changes: answer from these collections
        from inferhub.api.rag_routes import chat_with_collections

        return await chat_with_collections(request, body, "/v1/chat/completions")
    return await _respond(request, "chat", body, "/v1/chat/completions")


@router.post("/completions", openapi_extra=body_schema("CompletionRequest"))
@inference.metered("/v1/completions")
async def completions(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    validation.check_completion(body)
    return await _respond(request, "completions", body, "/v1/completions")


@router.post("/embeddings", openapi_extra=body_schema("EmbeddingRequest"))
@inference.metered("/v1/embeddings")
async def embeddings(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    validation.check_embeddings(body)
    result = await inference.run(request, "embeddings", body, endpoint="/v1/embeddings")
    return ORJSONResponse(result.body, headers=result.headers)


@router.get("/models")
async def list_models(request: Request):
    """The OpenAI list; Anthropic's page for a client that sends ``anthropic-version`` (the Anthropic SDKs,
    Claude Code)."""
    authenticate(request)
    if request.headers.get("anthropic-version"):
        return anthropic_routes.anthropic_models(request)
    created = int(time.time())
    names = context_of(request).registry.model_names()
    return ORJSONResponse(
        {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": created, "owned_by": "inferhub"} for n in names],
        }
    )


async def _respond(request: Request, capability: str, body: dict, endpoint: str):
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        opened = await inference.open_stream(request, capability, body, endpoint=endpoint)  # type: ignore[arg-type]
        return StreamingResponse(
            openai_sse(opened.stream, include_usage=include_usage), media_type="text/event-stream",
            headers={**SSE_HEADERS, **opened.headers},
        )  # fmt: skip
    result = await inference.run(request, capability, body, endpoint=endpoint)  # type: ignore[arg-type]
    return ORJSONResponse(result.body, headers=result.headers)
