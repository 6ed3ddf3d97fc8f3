"""Reading Server-Sent Events and NDJSON from an upstream byte stream without re-encoding."""

from __future__ import annotations

from collections.abc import AsyncIterator

DONE = b"[DONE]"


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a byte stream into lines (without the newline), keeping bytes as bytes."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        while True:
            index = buffer.find(b"\n")
            if index < 0:
                break
            line, buffer = buffer[:index], buffer[index + 1 :]
            if line.endswith(b"\r"):
                line = line[:-1]
            yield line
    if buffer.strip():
        yield buffer


async def iter_sse_data(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield the payload of each ``data:`` field, then ``DONE`` if the stream ended with ``[DONE]``."""
    async for line in iter_lines(chunks):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].lstrip()
        if payload == DONE:
            yield DONE
            return
        if payload:
            yield payload
