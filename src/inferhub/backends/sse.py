"""Reading Server-Sent Events and NDJSON from an upstream byte stream without re-encoding."""

from __future__ import annotations

from collections.abc import AsyncIterator

DONE = b"[DONE]"
# What may follow ``[DONE]`` before the body ends; more and the connection is closed instead of reused.
_DRAIN_LIMIT = 65_536


async def iter_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a byte stream into lines (without the newline), keeping bytes as bytes."""
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        start = 0
        while True:  # slice each line out by offset; re-slicing the buffer per line is quadratic in a read
            index = buffer.find(b"\n", start)
            if index < 0:
                break
            line = buffer[start:index]
            start = index + 1
            if line.endswith(b"\r"):
                line = line[:-1]
            yield line
        if start:
            buffer = buffer[start:]
    if buffer.strip():
        yield buffer


async def drain_rest(chunks: AsyncIterator[bytes]) -> None:
    """Read what is left of a finished stream, so the HTTP client can put the connection back in its pool.

    Closing a response whose body was not read to the end makes httpcore drop the connection: every
    stream then paid a new TCP (and TLS) handshake towards the upstream (docs/performance.md, finding 2).
    """
    left = _DRAIN_LIMIT
    try:
        async for chunk in chunks:
            left -= len(chunk)
            if left < 0:
                return
    except Exception:  # the stream is complete for the client; a fault in its tail only costs the connection
        return


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
