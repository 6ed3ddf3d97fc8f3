"""Ollama-compatible routes: ``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``, ``/api/version``,
and the ones Open WebUI and other Ollama tools call beside them: ``/api/show``, ``/api/ps``, ``/api/pull``.

Errors on these routes use Ollama's shape, ``{"error": "..."}`` (see ``app.py``).
Requests are translated to the OpenAI shape and go through the same pipeline.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from inferhub.api import inference, validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, context_of
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import ollama_ndjson
from inferhub.backends import translate
from inferhub.backends.base import Backend
from inferhub.errors import InvalidRequest, ModelNotFound

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
    registry = context_of(request).registry
    models = [_model_entry(name, registry.candidates(name)[0]) for name in registry.model_names()]
    return ORJSONResponse({"models": models})


def _details(backend: Backend) -> dict:
    return {
        "format": "gguf" if backend.backend_type in ("llamacpp", "ollama") else "",
        "family": "",
        "families": None,
        "parameter_size": "",
        "quantization_level": "",
    }


def _model_entry(name: str, backend: Backend) -> dict:
    modified = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"name": name, "model": name, "modified_at": modified, "size": 0, "digest": "",
            "details": _details(backend)}  # fmt: skip


def _served_backend(request: Request, body: dict) -> Backend:
    """The first backend of the model a show or pull names (Ollama takes ``model``, older clients ``name``)."""
    model = body.get("model", body.get("name"))
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: expected the name of a model, as a non-empty string", param="model")
    candidates = context_of(request).registry.candidates(model)
    if not candidates:
        raise ModelNotFound(f"model '{model}' not found: Inferhub serves {context_of(request).registry.model_names()}")
    return candidates[0]


# Ollama's capability names for what a backend serves.
_OLLAMA_CAPABILITIES = {"chat": "completion", "completions": "completion", "embeddings": "embedding"}


@router.post("/show")
async def show(request: Request):
    """A served model as Ollama describes one; what Inferhub does not know (modelfile, template) is empty."""
    authenticate(request)
    backend = _served_backend(request, await inference.read_body(request))
    model_info: dict = {"general.architecture": backend.backend_type}
    if backend.context_tokens:
        model_info[f"{backend.backend_type}.context_length"] = backend.context_tokens
    capabilities = sorted({_OLLAMA_CAPABILITIES[c] for c in backend.serves})
    return ORJSONResponse({"modelfile": "", "parameters": "", "template": "", "details": _details(backend),
                           "model_info": model_info, "capabilities": capabilities})  # fmt: skip


@router.get("/ps")
async def ps(request: Request):
    """The served models that have a backend up, as Ollama lists its loaded ones (never unloaded here)."""
    authenticate(request)
    registry = context_of(request).registry
    models = []
    for name in registry.model_names():
        backend = registry.candidates(name)[0]
        entry = _model_entry(name, backend)
        del entry["modified_at"]
        models.append({**entry, "expires_at": "2999-01-01T00:00:00Z", "size_vram": 0})
    return ORJSONResponse({"models": models})


@router.post("/pull")
async def pull(request: Request):
    """Ollama tools pull before they use a model: for a model Inferhub serves the pull succeeds at once
    (streamed as Ollama streams it, unless ``stream`` is false); any other model is a 404 saying so,
    because Inferhub does not download models: a backend serves them."""
    authenticate(request)
    body = await inference.read_body(request)
    _served_backend(request, body)
    steps = [{"status": "pulling manifest"}, {"status": "verifying sha256 digest"},
             {"status": "writing manifest"}, {"status": "success"}]  # fmt: skip
    if body.get("stream", True) is False:
        return ORJSONResponse(steps[-1])
    lines = b"".join(orjson.dumps(step) + b"\n" for step in steps)
    return StreamingResponse(iter([lines]), media_type=NDJSON)


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
