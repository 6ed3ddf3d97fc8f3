"""Ollama-compatible routes: ``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``, ``/api/version``.

Errors on these routes use Ollama's shape, ``{"error": "..."}`` (see ``app.py``).
Requests are translated to the OpenAI shape and go through the same pipeline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from inferhub.api import inference, validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, context_of
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import ollama_ndjson
from inferhub.backends import translate
from inferhub.errors import InvalidRequest

router = APIRouter(prefix="/api", tags=["Ollama-compatible"])

# What /api/version reports: the Ollama API level these routes implement.
OLLAMA_API_VERSION = "0.12.0"
NDJSON = "application/x-ndjson"


@router.post("/chat", openapi_extra=body_schema("OllamaChatRequest"))
@inference.metered("/api/chat")
async def chat(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    validation.check_ollama_chat(body)
    openai_body = translate.ollama_chat_to_openai_request(body)
    return await _respond(request, "chat", openai_body, model=body["model"], stream=body.get("stream", True),
                          endpoint="/api/chat")  # fmt: skip


@router.post("/generate", openapi_extra=body_schema("OllamaGenerateRequest"))
@inference.metered("/api/generate")
async def generate(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    validation.check_ollama_generate(body)
    if not body.get("prompt"):
        # Ollama answers an empty prompt by loading the model; every model here is loaded already.
        return ORJSONResponse({"model": body["model"], "created_at": translate.now_rfc3339(), "response": "",
                               "done": True, "done_reason": "load"})  # fmt: skip
    capability, openai_body = translate.ollama_generate_to_openai_request(body)
    return await _respond(request, capability, openai_body, model=body["model"], stream=body.get("stream", True),
                          generate=True, endpoint="/api/generate")  # fmt: skip


@router.post("/embed", openapi_extra=body_schema("OllamaEmbedRequest"))
@inference.metered("/api/embed")
async def embed(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    inputs = validation.check_embeddings(body)
    started = time.perf_counter_ns()
    answer = await inference.run(
        request, "embeddings", {"model": body["model"], "input": inputs}, endpoint="/api/embed"
    )
    result, headers = answer.body, answer.headers
    return ORJSONResponse(
        {
            "model": body["model"],
            "embeddings": [item["embedding"] for item in result["data"]],
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": 0,
            "prompt_eval_count": (result.get("usage") or {}).get("prompt_tokens", 0),
        },
        headers=headers,
    )


@router.post("/embeddings")
@inference.metered("/api/embeddings")
async def embeddings_legacy(request: Request):
    """The older single-prompt form: ``{"model", "prompt"}`` → ``{"embedding": [...]}``."""
    authenticate(request)
    body = await inference.read_body(request)
    validation.require_model(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequest("prompt: expected a non-empty string", param="prompt")
    result = await inference.run(
        request, "embeddings", {"model": body["model"], "input": [prompt]}, endpoint="/api/embeddings"
    )
    return ORJSONResponse({"embedding": result.body["data"][0]["embedding"]}, headers=result.headers)


@router.get("/tags")
async def tags(request: Request):
    authenticate(request)
    context = context_of(request)
    modified = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    models = []
    for name in context.registry.model_names():
        backend = context.registry.candidates(name)[0]
        models.append(
            {
                "name": name,
                "model": name,
                "modified_at": modified,
                "size": 0,
                "digest": "",
                "details": {
                    "format": "gguf" if backend.backend_type in ("llamacpp", "ollama") else "",
                    "family": "",
                    "families": None,
                    "parameter_size": "",
                    "quantization_level": "",
                },
            }
        )
    return ORJSONResponse({"models": models})


@router.get("/version")
async def version():
    return ORJSONResponse({"version": OLLAMA_API_VERSION})


async def _respond(
    request: Request, capability: str, body: dict, *, model: str, stream: bool, endpoint: str, generate: bool = False
):
    if stream:
        opened = await inference.open_stream(request, capability, body, endpoint=endpoint)  # type: ignore[arg-type]
        return StreamingResponse(ollama_ndjson(opened.stream, model, generate=generate), media_type=NDJSON,
                                 headers=opened.headers)  # fmt: skip
    started = time.perf_counter_ns()
    answer = await inference.run(request, capability, body, endpoint=endpoint)  # type: ignore[arg-type]
    result, headers = answer.body, answer.headers
    elapsed = time.perf_counter_ns() - started
    if generate:
        return ORJSONResponse(translate.openai_to_ollama_generate_response(result, model, elapsed), headers=headers)
    return ORJSONResponse(translate.openai_to_ollama_chat_response(result, model, elapsed), headers=headers)
