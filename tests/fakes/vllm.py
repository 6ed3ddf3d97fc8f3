"""Fake vLLM OpenAI-compatible server for a reasoning model (``vllm serve --reasoning-parser deepseek_r1``).

Follows vLLM's OpenAI server (vllm/entrypoints/openai) and its "Reasoning Outputs" docs:
``POST /v1/chat/completions`` returns ``choices[0].message.reasoning_content`` next to ``content``; with
``"stream": true`` it sends SSE ``data: {chat.completion.chunk}`` events: a first delta with
``role``, deltas carrying ``reasoning_content``, then deltas carrying ``content``, the last one with
``finish_reason``; with ``stream_options.include_usage`` one more chunk with empty ``choices`` and
``usage``; then ``data: [DONE]``. ``max_tokens``/``max_completion_tokens`` cap reasoning + content tokens
(``finish_reason: "length"``; cut inside the reasoning, ``content`` is null as the deepseek_r1 parser
gives). ``stop`` cuts the content (``stop_reason`` is the matched string). Also ``POST /v1/completions``,
``GET /v1/models`` (with ``max_model_len``), ``GET /metrics`` (Prometheus text with
``vllm:num_requests_running``/``vllm:num_requests_waiting`` gauges), ``GET /health`` and ``GET /version``.
Errors use vLLM's ``{"error": {"message", "type", "param", "code"}}``.

Deterministic model: reasoning ``"Let me think about: <last user text>"``, answer ``"echo: <text>"`` (or
``reply(text)``); a token is a whitespace-delimited word; ``prompt_tokens`` counts words in all messages.
Metrics: ``running`` is the number of in-flight generation requests unless ``app.state.metrics_running``
is set; ``waiting`` is ``app.state.metrics_waiting``. Other knobs on ``app.state`` (see ``_common``).
"""

import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ._common import (
    EarlyResponse,
    apply_stop,
    count_words,
    dumps,
    early_failure,
    init_state,
    json_response,
    last_user_text,
    record,
    respond,
    take_fail_mode,
    text_of,
    tokens,
)

ReasoningField = Literal["reasoning_content", "reasoning", "both"]
_GENERATION_PATHS = ("/v1/chat/completions", "/v1/completions")


def _error(message: str, err_type: str, status: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": None, "code": status}}


class _Reject(EarlyResponse):
    def __init__(self, message: str, err_type: str = "BadRequestError", status: int = 400) -> None:
        super().__init__(json_response(_error(message, err_type, status), status))


class _InFlight:
    """ASGI middleware counting generation requests from arrival until their response is fully sent."""

    def __init__(self, app: ASGIApp, counters: dict[str, int]) -> None:
        self.app, self.counters = app, counters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in _GENERATION_PATHS:
            await self.app(scope, receive, send)
            return
        self.counters["in_flight"] += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.counters["in_flight"] -= 1


def create_fake_vllm_app(
    model: str = "deepseek-r1",
    *,
    root: str = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    max_model_len: int = 32768,
    reasoning: bool = True,
    reasoning_field: ReasoningField = "reasoning_content",
    version: str = "0.10.1",
    reply: Callable[[str], str] | None = None,
) -> Starlette:
    """Build the fake vLLM ASGI app serving ``model`` (the ``--served-model-name``).

    ``reasoning=False`` behaves like a server without a reasoning parser (``reasoning_content`` null).
    ``reasoning_field`` picks the field name: vLLM >= 0.11 renamed it ``reasoning`` ("both" sends both).
    """
    answer = reply or (lambda text: f"echo: {text}")
    fields = ("reasoning_content", "reasoning") if reasoning_field == "both" else (reasoning_field,)
    counters = {"prompt": 0, "generation": 0, "in_flight": 0}
    created = int(time.time())

    async def begin(request: Request) -> tuple[dict[str, Any], str | None]:
        body, ok = await record(request)
        mode = take_fail_mode(request)
        failure = await early_failure(request, mode, _error("fake vllm: internal error", "InternalServerError", 500))
        if failure is not None:
            raise EarlyResponse(failure)
        if not ok or not isinstance(body, dict):
            raise _Reject("Expecting value: line 1 column 1 (char 0)")
        requested = body.get("model")
        if requested and requested != model:
            raise _Reject(f"The model `{requested}` does not exist.", "NotFoundError", 404)
        return body, mode

    def budget(body: dict[str, Any], prompt_tokens: int) -> int:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        if limit is None:
            return max_model_len - prompt_tokens
        if not isinstance(limit, int) or limit < 1:
            raise _Reject(f"max_tokens must be at least 1, got {limit}.")
        if prompt_tokens + limit > max_model_len:
            raise _Reject(
                f"'max_tokens' or 'max_completion_tokens' is too large: {limit}. "
                f"This model's maximum context length is {max_model_len} tokens "
                f"and your request has {prompt_tokens} input tokens "
                f"({limit} > {max_model_len} - {prompt_tokens})."
            )
        return limit

    def generate(think: str, text: str, body: dict[str, Any], limit: int) -> tuple[list[str], list[str], str, Any]:
        text, stop_hit = apply_stop(text, body.get("stop"))
        think_toks, text_toks = tokens(think), tokens(text)
        if len(think_toks) + len(text_toks) > limit:
            return think_toks[:limit], text_toks[: max(0, limit - len(think_toks))], "length", None
        return think_toks, text_toks, "stop", stop_hit

    def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
        counters["prompt"] += prompt_tokens
        counters["generation"] += completion_tokens
        total = prompt_tokens + completion_tokens
        return {"prompt_tokens": prompt_tokens, "total_tokens": total, "completion_tokens": completion_tokens}

    def sse(chunks: list[dict[str, Any]]) -> list[bytes]:
        return [b"data: " + dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]

    async def chat_completions(request: Request) -> Response:
        try:
            body, mode = await begin(request)
            messages = body.get("messages")
            if not isinstance(messages, list) or not messages:
                raise _Reject("messages: Field required" if messages is None else "messages must not be empty")
            prompt_tokens = sum(count_words(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
            user_text = last_user_text(messages)
            think = f"Let me think about: {user_text}" if reasoning else ""
            think_toks, content_toks, finish, stop_hit = generate(
                think, answer(user_text), body, budget(body, prompt_tokens)
            )
        except EarlyResponse as exc:
            return exc.response
        use = usage(prompt_tokens, len(think_toks) + len(content_toks))
        reasoning_text = "".join(think_toks) if reasoning else None
        # deepseek_r1 parser: content is what follows the end of thinking, null when there is none.
        content = "".join(content_toks) or (None if reasoning else "")
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant"}
            message.update({f: reasoning_text or None for f in fields})
            message.update({"content": content, "tool_calls": []})
            choice = {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": stop_hit,
            }
            out = {
                **base,
                "object": "chat.completion",
                "choices": [choice],
                "usage": {**use, "prompt_tokens_details": None},
            }
            return respond(request, mode, obj={**out, "prompt_logprobs": None})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None, last: bool = False) -> dict[str, Any]:
            choice: dict[str, Any] = {
                "index": 0,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            if last:
                choice["stop_reason"] = stop_hit
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        deltas = [{f: t for f in fields} for t in think_toks] + [{"content": t} for t in content_toks]
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk(d) for d in deltas[:-1]]
        events.append(chunk(deltas[-1] if deltas else {"content": ""}, finish, last=True))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": use})
        return respond(request, mode, chunks=sse(events), media_type="text/event-stream; charset=utf-8")

    async def completions(request: Request) -> Response:
        try:
            body, mode = await begin(request)
            raw = body.get("prompt")
            prompts = [raw] if isinstance(raw, str) else raw
            if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
                raise _Reject("prompt must be a string or a non-empty list of strings")
            prompt_tokens = sum(count_words(p) for p in prompts)
            limit = budget(body, max(count_words(p) for p in prompts))
            results = [generate("", answer(p), body, limit) for p in prompts]
        except EarlyResponse as exc:
            return exc.response
        use = usage(prompt_tokens, sum(len(r[1]) for r in results))
        base = {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
        }
        prefix = [p if body.get("echo") else "" for p in prompts]
        if not body.get("stream"):
            choices = [
                {
                    "index": i,
                    "text": prefix[i] + "".join(toks),
                    "logprobs": None,
                    "finish_reason": fin,
                    "stop_reason": stop,
                    "prompt_logprobs": None,
                }
                for i, (_, toks, fin, stop) in enumerate(results)
            ]
            return respond(request, mode, obj={**base, "choices": choices, "usage": use})
        events = []
        for i, (_, toks, fin, stop) in enumerate(results):
            pieces = toks or [""]
            for j, tok in enumerate(pieces):
                is_last = j == len(pieces) - 1
                choice = {
                    "index": i,
                    "text": (prefix[i] if j == 0 else "") + tok,
                    "logprobs": None,
                    "finish_reason": fin if is_last else None,
                    "stop_reason": stop if is_last else None,
                }
                events.append({**base, "choices": [choice]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "choices": [], "usage": use})
        return respond(request, mode, chunks=sse(events), media_type="text/event-stream; charset=utf-8")

    async def simple(request: Request) -> tuple[str | None, Response | None]:
        await record(request)
        mode = take_fail_mode(request)
        return mode, await early_failure(request, mode, _error("fake vllm: internal error", "InternalServerError", 500))

    async def models(request: Request) -> Response:
        mode, failure = await simple(request)
        card = {
            "id": model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": root,
            "parent": None,
            "max_model_len": max_model_len,
            "permission": [
                {
                    "id": f"modelperm-{uuid.uuid5(uuid.NAMESPACE_DNS, model).hex}",
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }
        return failure or respond(request, mode, obj={"object": "list", "data": [card]})

    async def metrics(request: Request) -> Response:
        mode, failure = await simple(request)
        if failure is not None:
            return failure
        state = request.app.state
        running = counters["in_flight"] if state.metrics_running is None else state.metrics_running
        labels = f'{{model_name="{model}",engine="0"}}'
        rows = [
            ("vllm:num_requests_running", "gauge", "Number of requests in model execution batches.", running),
            (
                "vllm:num_requests_waiting",
                "gauge",
                "Number of requests waiting to be processed.",
                state.metrics_waiting,
            ),
            ("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent usage.", 0.0),
            (
                "vllm:prompt_tokens_total",
                "counter",
                "Number of prefill tokens processed.",
                counters["prompt"],
            ),
            (
                "vllm:generation_tokens_total",
                "counter",
                "Number of generation tokens processed.",
                counters["generation"],
            ),
        ]
        text = "".join(
            f"# HELP {name} {doc}\n# TYPE {name} {kind}\n{name}{labels} {float(value)}\n"
            for name, kind, doc, value in rows
        )
        if mode == "break_stream":
            return respond(request, mode, obj=text)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def health(request: Request) -> Response:
        _mode, failure = await simple(request)
        return failure or Response(b"", 200)

    async def get_version(request: Request) -> Response:
        mode, failure = await simple(request)
        return failure or respond(request, mode, obj={"version": version})

    app = Starlette(
        middleware=[Middleware(_InFlight, counters=counters)],
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/completions", completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/version", get_version, methods=["GET"]),
        ],
    )
    init_state(app)
    app.state.metrics_running = None
    app.state.metrics_waiting = 0
    return app
