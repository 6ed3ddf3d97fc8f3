"""Fake OpenAI-compatible engine that calls tools, as vLLM does with ``--enable-auto-tool-choice``.

Follows vLLM's OpenAI server (its "Tool Calling" docs): when the request has ``tools`` and the last message
is not a ``tool`` message, the answer is one call of the first tool, ``message.tool_calls = [{id:
"chatcmpl-tool-<hex>", type: "function", function: {name, arguments: "<JSON text>"}}]``, ``content`` null and
``finish_reason: "tool_calls"``. Streamed, the first chunk has ``role``; the next names the call
(``tool_calls[0] = {index: 0, id, type, function: {name, arguments: ""}}``); then argument pieces
(``{index: 0, function: {arguments: "..."}}``); the last chunk has ``finish_reason: "tool_calls"``, then a
usage chunk with ``stream_options.include_usage`` and ``data: [DONE]``. After a ``tool`` message the answer
is text: ``"tool said: <its content>"``. Arguments are ``app.state.arguments`` (default ``{"city": "Paris"}``).
Every POST body is on ``app.state.requests``; ``app.state.delay`` (seconds) slows each chat answer;
``app.state.fail_mode = "break_stream"`` cuts a stream after its first two events (see ``_common``).
Also ``GET /v1/models`` and ``GET /health``.
"""

import asyncio
import json
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ._common import dumps, init_state, json_response, record, respond, take_fail_mode, text_of, tokens


def create_fake_tool_engine_app(model: str = "tool-model") -> Starlette:
    async def chat(request: Request) -> Response:
        body, _ok = await record(request)
        if request.app.state.delay:
            await asyncio.sleep(request.app.state.delay)
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        call = bool(body.get("tools")) and last.get("role") != "tool"
        prompt_tokens = sum(len(text_of(m.get("content")).split()) for m in messages if isinstance(m, dict))
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        if call:
            name = body["tools"][0]["function"]["name"]
            arguments = json.dumps(request.app.state.arguments)
            call_id = f"chatcmpl-tool-{uuid.uuid4().hex}"
            pieces = [arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]]
            completion, finish, content = len(pieces) + 1, "tool_calls", None
        else:
            content = f"tool said: {text_of(last.get('content'))}"
            pieces, completion, finish = tokens(content), len(tokens(content)), "stop"
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                 "total_tokens": prompt_tokens + completion}  # fmt: skip
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": content, "tool_calls": []}
            if call:
                message["tool_calls"] = [{"id": call_id, "type": "function",
                                          "function": {"name": name, "arguments": arguments}}]  # fmt: skip
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            return json_response({**base, "object": "chat.completion", "choices": [choice], "usage": usage})

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return b"data: " + dumps({**base, "object": "chat.completion.chunk", "choices": [choice]}) + b"\n\n"

        events = [chunk({"role": "assistant", "content": ""})]
        if call:
            events.append(chunk({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}))  # fmt: skip
            events += [chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces]
            events.append(chunk({}, finish))
        else:
            events += [chunk({"content": p}) for p in pieces[:-1]]
            events.append(chunk({"content": pieces[-1]}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            data = {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            events.append(b"data: " + dumps(data) + b"\n\n")
        events.append(b"data: [DONE]\n\n")
        return respond(request, take_fail_mode(request), chunks=events, media_type="text/event-stream")

    async def models(request: Request) -> Response:
        await record(request)
        card = {"id": model, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 8192}
        return json_response({"object": "list", "data": [card]})

    async def health(request: Request) -> Response:
        return Response(b"", 200)

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"]),
                            Route("/v1/models", models, methods=["GET"]),
                            Route("/health", health, methods=["GET"])])  # fmt: skip
    init_state(app)
    app.state.arguments = {"city": "Paris"}
    app.state.delay = 0.0  # seconds before each chat answer
    return app
