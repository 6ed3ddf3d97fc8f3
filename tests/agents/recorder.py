"""A recording stand-in for an OpenAI Responses / Anthropic Messages server, to learn and pin what the
agent CLIs send: every request's method, path, query, headers and JSON body is kept, and each main call
gets the smallest answer its client accepts (built with Inferhub's own translators, so the shapes are
the ones the gateway will send). Anything else gets a 404 in OpenAI's error shape, as Inferhub would.

    with Recorder(reply="pong") as rec:
        run_codex(rec.url + "/v1", "sk-test", "test-model", "Reply with the word pong", tmp_path)
        rec.requests  # [RecordedRequest(method="POST", path="/v1/responses", ...)]
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from fakes.server import BackgroundServer
from inferhub.protocols import anthropic_messages, responses


@dataclass(slots=True)
class RecordedRequest:
    """One request as the client sent it; ``body`` is the parsed JSON (None when absent or not JSON)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: Any
    raw: bytes = field(repr=False, default=b"")
    translation_error: str | None = None  # what Inferhub's translator said of the body (None: accepted)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A reply that calls the client's tool ``name`` with ``arguments`` (the agent runs it and calls again)."""

    name: str
    arguments: dict[str, Any]


Reply = str | ToolCall
_USAGE = {"prompt_tokens": 12, "completion_tokens": 1, "total_tokens": 13}


def _tool_calls(reply: ToolCall, number: int) -> list[dict[str, Any]]:
    function = {"name": reply.name, "arguments": orjson.dumps(reply.arguments).decode()}
    return [{"index": 0, "id": f"call_recorder_{number}", "type": "function", "function": function}]


def _chat_result(reply: Reply, model: str, number: int) -> dict[str, Any]:
    if isinstance(reply, ToolCall):
        message = {"role": "assistant", "content": None, "tool_calls": _tool_calls(reply, number)}
        finish = "tool_calls"
    else:
        message, finish = {"role": "assistant", "content": reply}, "stop"
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return {
        "id": "chatcmpl-recorder",
        "object": "chat.completion",
        "model": model,
        "choices": [choice],
        "usage": _USAGE,
    }


def _chunks(reply: Reply, model: str, number: int) -> list[dict[str, Any]]:
    base = {"id": "chatcmpl-recorder", "object": "chat.completion.chunk", "model": model}
    if isinstance(reply, ToolCall):
        delta: dict[str, Any] = {"role": "assistant", "tool_calls": _tool_calls(reply, number)}
        finish = "tool_calls"
    else:
        delta, finish = {"role": "assistant", "content": reply}, "stop"
    return [
        {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]},
        {**base, "choices": [], "usage": _USAGE},
    ]


def _translation_error(method: str, path: str, body: Any) -> str | None:
    """Whether Inferhub's translation takes the body the route would get; the answer is sent regardless,
    so a refused field shows in the test's assertion rather than as a CLI's retries."""
    if method != "POST" or not isinstance(body, dict):
        return None
    translate = {
        "/v1/responses": responses.to_chat,
        "/v1/messages": anthropic_messages.to_chat,
        "/v1/messages/count_tokens": anthropic_messages.count_tokens_body,
    }.get(path)
    if translate is None:
        return None
    try:
        translate(body)
    except Exception as exc:  # the translators raise InvalidRequest; anything else is as telling
        return f"{type(exc).__name__}: {exc}"
    return None


class Recorder:
    """The recording server, in a thread on a free loopback port; ``requests`` grows as they arrive.

    ``replies`` answer the main calls (``/responses``, ``/messages``) in turn, the last one repeated: a
    ``ToolCall`` first makes the agent run a tool and send its result back in the next call.
    """

    def __init__(self, reply: str = "pong", *, replies: list[Reply] | None = None) -> None:
        self.replies: list[Reply] = list(replies or [reply])
        self._answered = 0
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        methods = ["GET", "POST", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])
        self._server = BackgroundServer(self.app)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> Self:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def matching(self, method: str, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def summary(self) -> str:
        """One line per request, for assertion messages."""
        with self._lock:
            return "\n".join(f"{r.method} {r.path}{'?' + r.query if r.query else ''}" for r in self.requests)

    async def _handle(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
            raw=raw,
        )
        path, method = request.url.path, request.method
        record.translation_error = _translation_error(method, path, body)
        with self._lock:
            self.requests.append(record)
        if method == "POST" and path.endswith("/responses") and isinstance(body, dict):
            return self._responses(body)
        if method == "POST" and path.endswith("/messages/count_tokens"):
            return JSONResponse(anthropic_messages.count_tokens_result(12))
        if method == "POST" and path.endswith("/messages") and isinstance(body, dict):
            return self._messages(body)
        if method == "GET" and path.endswith("/models"):
            return JSONResponse({"object": "list", "data": []})
        error = {"message": f"no route {method} {path}", "type": "invalid_request_error", "code": "not_found"}
        return JSONResponse({"error": error}, status_code=404)

    def _next_reply(self) -> tuple[Reply, int]:
        with self._lock:
            number = self._answered
            self._answered += 1
        return self.replies[min(number, len(self.replies) - 1)], number

    def _responses(self, body: dict[str, Any]) -> Response:
        model = str(body.get("model") or "recorder")
        # The echo in the answer lists function tools only (the translator refuses the others; Codex
        # also sends "namespace" and "web_search" tools, which the clients do not read back).
        tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
        body = {**body, "tools": tools}
        response_id, created = responses.new_id("resp"), time.time()
        reply, number = self._next_reply()
        if not body.get("stream"):
            result = _chat_result(reply, model, number)
            return JSONResponse(responses.from_chat(result, body, response_id, created))
        stream = responses.ResponsesStream(body, response_id, created)
        events = stream.start()
        for chunk in _chunks(reply, model, number):
            events += stream.feed(chunk)
        events += stream.finish()
        payload = b"".join(responses.sse(event) for event in events)
        return StreamingResponse(iter([payload]), media_type="text/event-stream")

    def _messages(self, body: dict[str, Any]) -> Response:
        model = str(body.get("model") or "recorder")
        reply, number = self._next_reply()
        if not body.get("stream"):
            return JSONResponse(anthropic_messages.from_chat(_chat_result(reply, model, number), model))
        stream = anthropic_messages.MessagesStream(model, input_tokens=12)
        events = stream.start()
        for chunk in _chunks(reply, model, number):
            events += stream.feed(chunk)
        events += stream.finish()
        payload = b"".join(anthropic_messages.sse(event) for event in events)
        return StreamingResponse(iter([payload]), media_type="text/event-stream")
