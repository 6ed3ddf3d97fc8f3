"""Shared plumbing for the fake upstream engines: request recording, fail modes, fake tokens, embeddings.

Every fake app keeps its test knobs on ``app.state``:

* ``requests``: list of parsed JSON bodies of every POST received (in arrival order), but ``/api/show``.
* ``calls``: list of :class:`RecordedCall` for every request of any method (path, headers, body).
* ``fail_mode``: ``None`` | ``"500"`` | ``"garbage"`` | ``"hang"`` | ``"break_stream"`` | ``"drop_stream"``
  (settable at runtime; ``drop_stream``: a stream answers 200 and drops the connection before any event,
  as llama-cpp-python does with a prompt longer than its context).
* ``fail_times``: ``None`` (fail forever) or N: fail only the next N matching requests, then recover.
* ``fail_paths``: ``None`` (every route) or a set of paths the fail mode applies to, e.g. ``{"/api/chat"}``.
* ``hang_seconds``: how long ``"hang"`` sleeps before answering normally (default 30 s).
* ``abandoned``: paths of the ``"hang"`` requests whose client (the gateway) went away before the answer.
* ``chunk_delay``: seconds to sleep between streamed chunks (default 0).
"""

import asyncio
import hashlib
import json
import math
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

FailMode = Literal["500", "garbage", "hang", "break_stream", "drop_stream"]
FAIL_MODES: tuple[str, ...] = ("500", "garbage", "hang", "break_stream", "drop_stream")
GARBAGE_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>\n{not json"
_TOKEN_RE = re.compile(r"\s*\S+\s*")


@dataclass
class RecordedCall:
    """One request as the fake received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)


class EarlyResponse(Exception):
    """Raised to leave request handling early with a ready-made response."""

    def __init__(self, response: Response) -> None:
        super().__init__(f"early response {response.status_code}")
        self.response = response


def init_state(app: Starlette) -> None:
    """Install the recording and failure knobs on ``app.state``."""
    app.state.requests = []
    app.state.calls = []
    app.state.fail_mode = None
    app.state.fail_times = None
    app.state.fail_paths = None
    app.state.hang_seconds = 30.0
    app.state.abandoned = []
    app.state.chunk_delay = 0.0


_LOOKUPS = frozenset({"/api/show"})  # metadata the gateway asks for on its own (capabilities): not in ``requests``


async def record(request: Request) -> tuple[Any, bool]:
    """Read and record the request; return ``(body, ok)`` where ``ok`` is False for a non-JSON body."""
    raw = await request.body()
    body: Any = None
    ok = True
    if raw:
        try:
            body = json.loads(raw)
        except ValueError:
            body, ok = raw.decode("utf-8", "replace"), False
    state = request.app.state
    state.calls.append(
        RecordedCall(request.method, request.url.path, dict(request.headers), body, dict(request.query_params))
    )
    if request.method == "POST" and request.url.path not in _LOOKUPS:
        state.requests.append(body)
    return body, ok


def take_fail_mode(request: Request) -> str | None:
    """Return the fail mode that applies to this request, consuming one of ``fail_times`` if set."""
    state = request.app.state
    mode = state.fail_mode
    if mode is None:
        return None
    if mode not in FAIL_MODES:
        raise ValueError(f"unknown fail_mode {mode!r}; expected one of {FAIL_MODES}")
    if state.fail_paths is not None and request.url.path not in state.fail_paths:
        return None
    if state.fail_times is not None:
        state.fail_times -= 1
        if state.fail_times <= 0:
            state.fail_mode = None
            state.fail_times = None
    return mode


async def early_failure(request: Request, mode: str | None, error_body: Any) -> Response | None:
    """Apply the ``500``/``garbage``/``hang`` fail modes; ``break_stream`` is handled by :func:`respond`."""
    if mode == "500":
        return json_response(error_body, 500)
    if mode == "garbage":
        return Response(GARBAGE_BODY, 200, media_type="application/json")
    if mode == "hang":
        # Sleep, but stop as soon as the client gives up so no task outlives the test. ``hang_seconds`` is read
        # on every turn: lowering it (to 0) lets the requests already hanging go on.
        started = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < float(request.app.state.hang_seconds):
            if await request.is_disconnected():
                request.app.state.abandoned.append(request.url.path)
                return Response(b"", 499)
            await asyncio.sleep(0.05)
    return None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status, headers=headers, media_type="application/json; charset=utf-8")


class BrokenStreamResponse(Response):
    """Starts a 200 response, sends the given chunks, then drops the connection without finishing it."""

    def __init__(self, chunks: Sequence[bytes], media_type: str) -> None:
        self.chunks = list(chunks)
        self.status_code = 200
        self.background = None
        self.body = b""
        self.raw_headers = [(b"content-type", media_type.encode())]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        for chunk in self.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        # Returning without ``more_body: False`` makes uvicorn close the transport mid-body.


def respond(
    request: Request,
    mode: str | None,
    *,
    chunks: Sequence[bytes] | None = None,
    obj: Any = None,
    media_type: str = "application/x-ndjson",
    headers: dict[str, str] | None = None,
) -> Response:
    """Send ``chunks`` as a stream, or ``obj`` as one JSON body; honour ``break_stream``."""
    if chunks is not None:
        if mode == "break_stream":
            return BrokenStreamResponse(chunks[:2], media_type)
        if mode == "drop_stream":
            return BrokenStreamResponse([], media_type)
        return StreamingResponse(_paced(request, chunks), media_type=media_type, headers=headers)
    body = dumps(obj)
    if mode == "break_stream":
        half = max(1, len(body) // 2)
        return BrokenStreamResponse([body[: half // 2], body[half // 2 : half]], "application/json")
    return Response(body, 200, headers=headers, media_type="application/json; charset=utf-8")


async def _paced(request: Request, chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    delay = float(request.app.state.chunk_delay)
    for i, chunk in enumerate(chunks):
        if delay and i:
            await asyncio.sleep(delay)
        yield chunk


def tokens(text: str) -> list[str]:
    """Split ``text`` into fake word tokens whose concatenation is ``text`` (whitespace kept on tokens)."""
    return _TOKEN_RE.findall(text)


def count_words(text: str) -> int:
    return len(text.split())


def apply_stop(text: str, stop: str | Sequence[str] | None) -> tuple[str, str | None]:
    """Cut ``text`` before the earliest stop sequence; return the cut text and the stop that matched."""
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    best: tuple[int, str] | None = None
    for s in stops:
        if s and (i := text.find(s)) >= 0 and (best is None or i < best[0]):
            best = (i, s)
    return (text, None) if best is None else (text[: best[0]], best[1])


def hash_embedding(text: str, dim: int, normalize: bool = True) -> list[float]:
    """Deterministic pseudo-embedding of ``text``: ``dim`` floats from SHA-256, L2-normalised by default."""
    vec = []
    for i in range(dim):
        digest = hashlib.sha256(f"{i}\x00{text}".encode()).digest()
        vec.append(int.from_bytes(digest[:8], "big") / 2**63 - 1.0)
    if normalize:
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        vec = [v / norm for v in vec]
    return vec


def l2_normalize(vec: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


def text_of(content: Any) -> str:
    """Text of a chat message ``content``: a string, or OpenAI-style list of ``{"type":"text"}`` parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def last_user_text(messages: Sequence[Any]) -> str:
    for msg in reversed(messages):
        if isinstance(msg, dict) and msg.get("role") == "user":
            return text_of(msg.get("content"))
    return ""
