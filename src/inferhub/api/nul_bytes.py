"""NUL bytes: PostgreSQL refuses them in every text and JSONB value, so they stop at the door with a 400.

``RefuseNulBytes`` answers any request whose path or query string carries a NUL (``%00``) before a route
runs; ``nul_path`` finds the first string holding one in a parsed JSON body, so the body's parser can
name the field. No route needs its own check.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from inferhub.api import anthropic_routes
from inferhub.errors import InvalidRequest

NUL_MESSAGE = "must not contain a NUL byte (\\u0000)"


def nul_path(value: Any, where: str = "") -> str | None:
    """The JSON path (``messages[0].content``) of the first key or string holding a NUL byte, or None."""
    if isinstance(value, str):
        return where or "body" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            inner = f"{where}.{key}" if where else str(key)
            if "\x00" in key:
                return inner
            found = nul_path(item, inner)
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = nul_path(item, f"{where}[{index}]")
            if found:
                return found
    return None


def _where(scope: Scope) -> str | None:
    """``path`` or the name of the first query parameter with a NUL byte, or None."""
    if "\x00" in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for pair in query.split(b"&"):
        name, _, value = pair.partition(b"=")
        if b"\x00" in unquote_to_bytes(name.replace(b"+", b" ")) + unquote_to_bytes(value.replace(b"+", b" ")):
            return unquote_to_bytes(name).decode("utf-8", "replace").replace("\x00", "\\u0000") or "query"
    return None


class RefuseNulBytes:
    """Answer 400 to a NUL byte in the path or the query string (in the Ollama shape on Ollama's routes)."""

    def __init__(self, app: ASGIApp, ollama_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.ollama_paths = ollama_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        where = _where(scope) if scope["type"] == "http" else None
        if where is None:
            await self.app(scope, receive, send)
            return
        error = InvalidRequest(f"{where}: {NUL_MESSAGE}", param=where, code="invalid_value")
        body = error.openai_body()
        if scope["path"] in self.ollama_paths:
            body = {"error": error.message}
        raw = orjson.dumps(body)
        if anthropic_routes.is_messages_path(scope["path"]):
            _, raw = anthropic_routes.anthropic_error_bytes(400, error.message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        await send({"type": "http.response.start", "status": 400, "headers": headers})
        await send({"type": "http.response.body", "body": raw})
