"""Fake vLLM engine that calls tools (``vllm serve --enable-auto-tool-choice --tool-call-parser hermes``).

Follows vLLM's OpenAI server and its "Tool Calling" docs. ``POST /v1/chat/completions`` with ``tools``
and a conversation whose last message is not a ``tool`` result answers with one call of the first tool
(or of the tool ``tool_choice`` names): ``message.content`` null, ``message.tool_calls`` =
``[{id: "chatcmpl-tool-…", type: "function", function: {name, arguments: "<JSON text>"}}]``,
``finish_reason: "tool_calls"``. The arguments are ``app.state.tool_arguments`` (default
``{"city": "Paris"}``). Streamed (``"stream": true``), as vLLM's tool parsers stream: a first chunk with
``role``, then a delta ``tool_calls[{index: 0, id, type, function: {name}}]``, then deltas carrying the
``arguments`` text in fragments of ``app.state.fragment_size`` characters, then an empty delta with
``finish_reason: "tool_calls"``; with ``stream_options.include_usage`` a chunk with empty ``choices`` and
``usage``; then ``data: [DONE]``.

When the last message is a ``tool`` result (or there are no tools) the answer is text:
``"The tool said: <that result's content>"`` (``"echo: <last user text>"`` without one). Tokens are
whitespace-delimited words; ``prompt_tokens`` counts the words of all messages' text. Every POST body is
recorded on ``app.state.requests``; ``app.state.fail_mode`` works as in ``_common``. Also
``GET /v1/models``, ``/health``, ``/metrics``.

Knobs on ``app.state`` (for agent CLIs, which send many tools and extra turns): ``reply`` (a fixed text
answer instead of the echo, e.g. ``"pong"``), ``call_tools`` (False: always answer in text),
``tool_name`` (call this tool when the request offers it, instead of the first), ``delay`` (seconds
before each chat answer).
"""

import asyncio
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._common import (
    count_words,
    dumps,
    init_state,
    json_response,
    last_user_text,
    record,
    respond,
    take_fail_mode,
    text_of,
    tokens,
)

DEFAULT_ARGUMENTS = {"city": "Paris"}


def _called_tool(body: dict[str, Any], state: Any) -> str | None:
    """The tool to call: the one ``tool_choice`` names, else ``state.tool_name`` if offered, else the first;
    None when the model answers in text."""
    tools = body.get("tools") or []
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not tools or body.get("tool_choice") == "none" or not state.call_tools:
        return None
    if messages and messages[-1].get("role") == "tool":
        return None
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        return (choice.get("function") or {}).get("name")
    names = [(tool.get("function") or {}).get("name") for tool in tools if isinstance(tool, dict)]
    if state.tool_name is not None:
        return state.tool_name if state.tool_name in names else None
    return names[0] if names else None


def _text_answer(messages: list[dict[str, Any]], state: Any) -> str:
    """``state.reply``, else what the last tool result said, else the echo of the last user text."""
    if state.reply is not None:
        return state.reply
    if messages and messages[-1].get("role") == "tool":
        return f"The tool said: {text_of(messages[-1].get('content'))}"
    return f"echo: {last_user_text(messages)}"


def create_fake_tool_engine_app(model: str = "tool-model") -> Starlette:
    """The fake engine serving ``model``; knobs ``tool_arguments`` and ``fragment_size`` on ``app.state``."""

    async def chat_completions(request: Request) -> Response:
        body, ok = await record(request)
        mode = take_fail_mode(request)  # "break_stream": the stream breaks after its first chunks
        if not ok or not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            error = {"message": "messages: Field required", "type": "BadRequestError", "param": None, "code": 400}
            return json_response({"error": error}, 400)
        messages = [m for m in body["messages"] if isinstance(m, dict)]
        prompt_tokens = sum(count_words(text_of(m.get("content"))) for m in messages)
        state = request.app.state
        if state.delay:
            await asyncio.sleep(state.delay)
        base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        name = _called_tool(body, state)
        if name is not None:
            arguments = dumps(state.tool_arguments).decode()
            call_id = f"chatcmpl-tool-{uuid.uuid4().hex[:16]}"
            completion_tokens = max(1, count_words(arguments))
            message: dict[str, Any] = {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}],
            }  # fmt: skip
            finish = "tool_calls"
        else:
            text = _text_answer(messages, state)
            completion_tokens = len(tokens(text))
            message = {"role": "assistant", "content": text, "tool_calls": []}
            finish = "stop"
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if not body.get("stream"):
            choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish, "stop_reason": None}
            return respond(
                request, mode, obj={**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            )

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return {**base, "object": "chat.completion.chunk", "choices": [choice]}

        events = [chunk({"role": "assistant", "content": ""})]
        if name is not None:
            call = message["tool_calls"][0]
            events.append(chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                                 "function": {"name": name}}]}))  # fmt: skip
            size = state.fragment_size
            text = call["function"]["arguments"]
            for start in range(0, len(text), size):
                events.append(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": text[start : start + size]}}]})
                )
        else:
            events += [chunk({"content": piece}) for piece in tokens(message["content"])]
        events.append(chunk({}, finish))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
        frames = [b"data: " + dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]
        return respond(request, mode, chunks=frames, media_type="text/event-stream; charset=utf-8")

    async def models(request: Request) -> Response:
        await record(request)
        card = {"id": model, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 32768}
        return json_response({"object": "list", "data": [card]})

    async def health(request: Request) -> Response:
        return Response(b"", 200)

    async def metrics(request: Request) -> Response:
        labels = f'{{model_name="{model}"}}'
        text = f"vllm:num_requests_running{labels} 0.0\nvllm:num_requests_waiting{labels} 0.0\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    app = Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )
    init_state(app)
    app.state.tool_arguments = dict(DEFAULT_ARGUMENTS)
    app.state.fragment_size = 4
    app.state.reply = None
    app.state.call_tools = True
    app.state.tool_name = None
    app.state.delay = 0.0
    return app
