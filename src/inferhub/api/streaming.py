"""Turning an open upstream stream into SSE (OpenAI) or NDJSON (Ollama) bytes for the client."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import orjson

from inferhub.backends import translate
from inferhub.errors import UpstreamError
from inferhub.gateway.pipeline import OpenStream

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


async def openai_sse(stream: OpenStream, *, include_usage: bool) -> AsyncIterator[bytes]:
    """Chunks pass through as the upstream sent them when it spoke OpenAI (no re-encoding)."""
    try:
        async for event in stream.events:
            data = event.data
            if not data.get("choices") and "usage" in data and not include_usage:
                continue
            payload = event.raw if event.raw is not None else orjson.dumps(data)
            yield b"data: " + payload + b"\n\n"
    except UpstreamError as exc:
        # The openai SDK raises APIError when an event carries "error".
        yield b"data: " + orjson.dumps(exc.openai_body()) + b"\n\n"
        return
    yield b"data: [DONE]\n\n"


async def ollama_ndjson(stream: OpenStream, model: str, *, generate: bool) -> AsyncIterator[bytes]:
    started = time.perf_counter_ns()
    tool_calls = translate.ToolCallAssembler()
    try:
        async for event in stream.events:
            line = translate.openai_chunk_to_ollama_line(event.data, model, generate=generate)
            if line is not None:
                yield orjson.dumps(line) + b"\n"
            if not generate:
                tool_calls.add(event.data)
        calls = tool_calls.take()
        if calls:
            yield orjson.dumps(translate.ollama_tool_call_line(model, calls)) + b"\n"
    except UpstreamError as exc:
        # The ollama client raises ResponseError when a line carries "error".
        yield orjson.dumps({"error": exc.message}) + b"\n"
        return
    outcome = stream.outcome
    final = translate.ollama_final_line(
        model,
        generate=generate,
        finish_reason=outcome.finish_reason,
        elapsed_ns=time.perf_counter_ns() - started,
        prompt=outcome.prompt_tokens,
        completion=outcome.completion_tokens,
    )
    yield orjson.dumps(final) + b"\n"
