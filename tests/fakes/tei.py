"""Fake Hugging Face Text Embeddings Inference (TEI) server, following TEI's HTTP API (router/src/http).

Routes: ``POST /embed`` (``{"inputs": str | list[str], "truncate"?, "normalize"? = true}`` ->
``[[float, ...], ...]``), ``POST /v1/embeddings`` and ``POST /embeddings`` (OpenAI shape with ``usage``;
``encoding_format`` ``float`` or ``base64``), ``GET /health`` (200, empty body; 503 when
``app.state.healthy`` is False) and ``GET /info``.

Errors are TEI's ``{"error": ..., "error_type": ...}`` (OpenAI routes: ``{"message", "code", "type"}``)
with TEI's status mapping: empty batch or empty text -> 400 ``Empty``, more than
``max_client_batch_size`` inputs or an input over ``max_input_length`` tokens without truncation -> 413
``Validation``. Body errors are axum's plain-text rejections: 415 without a JSON content type, 400 for
malformed JSON, 422 for a body of the wrong shape. Vectors are SHA-256-derived (shared with the Ollama
fake), L2-normalised unless ``normalize`` is false. A "token" is a whitespace word; each input also counts
2 special tokens, as BERT/XLM-R tokenizers add them. Test knobs live on ``app.state`` (see ``_common``).
"""

import base64
import struct
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._common import (
    EarlyResponse,
    early_failure,
    hash_embedding,
    init_state,
    json_response,
    record,
    respond,
    take_fail_mode,
)

_SPECIAL_TOKENS = 2


class _TeiError(Exception):
    def __init__(self, status: int, message: str, error_type: str) -> None:
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


def create_fake_tei_app(
    dim: int = 16,
    model_id: str = "BAAI/bge-m3",
    *,
    max_client_batch_size: int = 32,
    max_input_length: int = 8192,
    auto_truncate: bool = False,
    version: str = "1.7.0",
) -> Starlette:
    """Build the fake TEI ASGI app serving ``model_id`` with ``dim``-dimensional embeddings."""
    info = {
        "model_id": model_id,
        "model_sha": None,
        "model_dtype": "float32",
        "model_type": {"embedding": {"pooling": "cls"}},
        "max_concurrent_requests": 512,
        "max_input_length": max_input_length,
        "max_batch_tokens": 16384,
        "max_batch_requests": None,
        "max_client_batch_size": max_client_batch_size,
        "auto_truncate": auto_truncate,
        "tokenization_workers": 4,
        "version": version,
        "sha": None,
        "docker_label": None,
    }

    async def read(request: Request, key: str) -> tuple[list[str], dict[str, Any], str | None]:
        """Parse and validate the body like TEI's axum ``Json`` extractor and batch checks."""
        body, ok = await record(request)
        mode = take_fail_mode(request)
        failure = await early_failure(request, mode, {"error": "fake tei: internal error", "error_type": "Backend"})
        if failure is not None:
            raise EarlyResponse(failure)
        if "application/json" not in request.headers.get("content-type", ""):
            raise EarlyResponse(PlainTextResponse("Expected request with `Content-Type: application/json`", 415))
        if not ok:
            raise EarlyResponse(PlainTextResponse("Failed to parse the request body as JSON", 400))
        raw = body.get(key) if isinstance(body, dict) else None
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            msg = f"Failed to deserialize the JSON body into the target type: missing or invalid field `{key}`"
            raise EarlyResponse(PlainTextResponse(msg, 422))
        if not inputs:
            raise _TeiError(400, "`inputs` cannot be empty", "Empty")
        if len(inputs) > max_client_batch_size:
            msg = f"batch size {len(inputs)} > maximum allowed batch size {max_client_batch_size}"
            raise _TeiError(413, msg, "Validation")
        return inputs, body, mode

    def encode(inputs: list[str], truncate: bool, normalize: bool) -> tuple[list[list[float]], int]:
        vectors, total = [], 0
        for text in inputs:
            if not text:
                raise _TeiError(400, "Input validation error: `inputs` cannot be empty", "Empty")
            words = text.split()
            n_tokens = len(words) + _SPECIAL_TOKENS
            if n_tokens > max_input_length:
                if not truncate:
                    msg = f"`inputs` must have less than {max_input_length} tokens. Given: {n_tokens}"
                    raise _TeiError(413, f"Input validation error: {msg}", "Validation")
                words = words[: max_input_length - _SPECIAL_TOKENS]
                text, n_tokens = " ".join(words), max_input_length
            vectors.append(hash_embedding(text, dim, normalize))
            total += n_tokens
        return vectors, total

    def headers(inputs: list[str], n_tokens: int) -> dict[str, str]:
        return {
            "x-compute-type": "cpu",
            "x-compute-characters": str(sum(len(s) for s in inputs)),
            "x-compute-tokens": str(n_tokens),
            "x-compute-time": "1",
            "x-total-time": "1",
            "x-tokenization-time": "0",
            "x-queue-time": "0",
            "x-inference-time": "1",
        }

    async def embed(request: Request) -> Response:
        try:
            inputs, body, mode = await read(request, "inputs")
            truncate = body.get("truncate")
            vectors, n_tokens = encode(
                inputs,
                auto_truncate if truncate is None else bool(truncate),
                body.get("normalize", True) is not False,
            )
        except EarlyResponse as early:
            return early.response
        except _TeiError as err:
            return json_response({"error": err.message, "error_type": err.error_type}, err.status)
        return respond(request, mode, obj=vectors, headers=headers(inputs, n_tokens))

    async def openai_embed(request: Request) -> Response:
        try:
            inputs, body, mode = await read(request, "input")
            vectors, n_tokens = encode(inputs, auto_truncate, True)
        except EarlyResponse as early:
            return early.response
        except _TeiError as err:
            return json_response({"message": err.message, "code": err.status, "type": err.error_type}, err.status)
        as_base64 = body.get("encoding_format") == "base64"
        data = [
            {
                "object": "embedding",
                "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode() if as_base64 else v,
                "index": i,
            }
            for i, v in enumerate(vectors)
        ]
        out = {
            "object": "list",
            "data": data,
            "model": model_id,
            "usage": {"prompt_tokens": n_tokens, "total_tokens": n_tokens},
        }
        return respond(request, mode, obj=out, headers=headers(inputs, n_tokens))

    async def health(request: Request) -> Response:
        await record(request)
        mode = take_fail_mode(request)
        failure = await early_failure(request, mode, {"error": "unhealthy", "error_type": "Unhealthy"})
        if failure is not None:
            return failure
        if not request.app.state.healthy:
            return json_response({"error": "unhealthy", "error_type": "Unhealthy"}, 503)
        return Response(b"", 200)

    async def get_info(request: Request) -> Response:
        await record(request)
        mode = take_fail_mode(request)
        failure = await early_failure(request, mode, {"error": "fake tei: internal error", "error_type": "Backend"})
        return failure or respond(request, mode, obj=info)

    app = Starlette(
        routes=[
            Route("/embed", embed, methods=["POST"]),
            Route("/v1/embeddings", openai_embed, methods=["POST"]),
            Route("/embeddings", openai_embed, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/info", get_info, methods=["GET"]),
        ]
    )
    init_state(app)
    app.state.healthy = True
    app.state.info = info
    return app
