"""The in-process load generator: closed loop at a concurrency, open loop at a rate, streaming or not.

For ``http://`` targets it speaks HTTP/1.1 itself over asyncio streams (keep-alive, Content-Length
and chunked bodies): about 30 µs of client work per request, so at concurrency 1 the measured
latency is the server's, and one core can drive several thousand requests per second. ``https://``
targets go through ``httpx`` (slower, and it says so in the report's ``engine`` field).

Every request gives one :class:`Sample`: start time, latency to the last byte, time to the first
``data:`` event (streams), ``data:`` events counted (``[DONE]`` excluded), HTTP status, error kind.
An open loop measures latency from the moment the request was *due*, not sent, so a client or server
that falls behind shows up in the percentiles (no coordinated omission); ``late`` counts the sends
that left more than 1 ms after their due time.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

DEFAULT_PROMPT = "Say hello to the benchmark."


@dataclass(slots=True)
class Sample:
    start: float  # perf_counter when the request was due (open loop) or sent (closed loop)
    latency: float  # seconds to the last byte
    ttft: float | None = None  # seconds to the first data: event (streams)
    chunks: int = 0  # data: events, [DONE] excluded
    status: int = 0
    error: str | None = None  # None, "http_<status>", or an exception kind

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Target:
    """One endpoint under load: ``url`` is the base (``http://127.0.0.1:8888``), the path is appended."""

    name: str
    url: str
    key: str | None = None
    model: str = "bench"
    stream: bool = False
    path: str = "/v1/chat/completions"
    max_tokens: int = 16
    prompt: str = DEFAULT_PROMPT
    pid: int | None = None  # process whose RSS is reported (the gateway)
    extra_headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": self.prompt}],
            "max_tokens": self.max_tokens,
        }
        if self.stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        return orjson.dumps(payload)

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.extra_headers}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        return headers

    def endpoint(self) -> str:
        return self.url.rstrip("/") + self.path


class SSECounter:
    """Counts ``data:`` lines across arbitrary read boundaries; notes when the first one completed."""

    __slots__ = ("_tail", "chunks", "done", "first")

    def __init__(self) -> None:
        self.chunks = 0
        self.done = False
        self.first: float | None = None
        self._tail = b""

    def feed(self, data: bytes) -> None:
        if self._tail:
            data = self._tail + data
        end = data.rfind(b"\n")
        if end < 0:
            self._tail = data
            return
        self._tail = data[end + 1 :]
        complete = data[: end + 1]
        # Each piece starts at a line start; a JSON payload escapes newlines, so "\ndata:" is a line start.
        count = complete.count(b"\ndata:") + complete.startswith(b"data:")
        if count:
            if b"data: [DONE]" in complete or b"data:[DONE]" in complete:
                count -= 1
                self.done = True
            if count and self.first is None:
                self.first = time.perf_counter()
            self.chunks += count

    def payloads(self, body: bytes) -> list[bytes]:  # used by the pass-through check, not on the hot path
        out = []
        for line in body.split(b"\n"):
            line = line.rstrip(b"\r")
            if line.startswith(b"data:"):
                payload = line[5:].lstrip(b" ")
                if payload != b"[DONE]":
                    out.append(payload)
        return out


class HTTPError(Exception):
    pass


class RawConnection:
    """One keep-alive HTTP/1.1 connection; enough of the protocol for JSON and SSE answers."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            import socket

            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, head: bytes, body: bytes, sse: SSECounter | None, keep: list[bytes] | None) -> int:
        """Send one request, read the whole answer; returns the status. ``keep`` collects the body if given."""
        if self.writer is None:
            await self._connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(head + body)
        reader = self.reader
        raw_head = await reader.readuntil(b"\r\n\r\n")
        status = int(raw_head[9:12])
        length = -1
        chunked = close = False
        for line in raw_head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                close = b"close" in value.lower()
        if chunked:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")  # no trailers expected
                    break
                data = await reader.readexactly(size + 2)
                if sse is not None:
                    sse.feed(data[:-2])
                if keep is not None:
                    keep.append(data[:-2])
        elif length >= 0:
            remaining = length
            while remaining:
                data = await reader.read(min(remaining, 65536))
                if not data:
                    raise HTTPError("connection closed mid-body")
                remaining -= len(data)
                if sse is not None:
                    sse.feed(data)
                if keep is not None:
                    keep.append(data)
        else:  # body until close
            while data := await reader.read(65536):
                if sse is not None:
                    sse.feed(data)
                if keep is not None:
                    keep.append(data)
            close = True
        if close:
            self.close()
        return status


class Client:
    """Issues requests to one target; one connection per concurrent worker (``slot``)."""

    def __init__(self, target: Target, timeout: float = 30.0) -> None:
        self.target = target
        self.timeout = timeout
        parts = urlsplit(target.endpoint())
        self.raw = parts.scheme == "http"
        self.engine = "raw-http/1.1" if self.raw else "httpx"
        body = target.body()
        self.body = body
        if self.raw:
            host = parts.hostname or "127.0.0.1"
            self.host, self.port = host, parts.port or 80
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc}", f"Content-Length: {len(body)}"]
            lines += [f"{k}: {v}" for k, v in target.headers().items()]
            self.head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
            self._connections: dict[int, RawConnection] = {}
        else:
            import httpx

            limits = httpx.Limits(max_connections=4096, max_keepalive_connections=4096)
            self._httpx = httpx.AsyncClient(timeout=60, limits=limits)

    async def one(self, slot: int, due: float | None = None, keep: list[bytes] | None = None) -> Sample:
        started = time.perf_counter()
        t0 = due if due is not None else started
        sse = SSECounter() if self.target.stream else None
        try:
            async with asyncio.timeout(self.timeout):
                if self.raw:
                    conn = self._connections.get(slot)
                    if conn is None:
                        conn = self._connections[slot] = RawConnection(self.host, self.port)
                    try:
                        status = await conn.request(self.head, self.body, sse, keep)
                    except BaseException:
                        conn.close()
                        raise
                else:
                    status = await self._httpx_one(sse, keep)
        except TimeoutError:
            return Sample(t0, time.perf_counter() - t0, error="timeout")
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HTTPError, ValueError) as exc:
            return Sample(t0, time.perf_counter() - t0, error=type(exc).__name__)
        except Exception as exc:  # httpx errors and anything unexpected: counted, never fatal
            return Sample(t0, time.perf_counter() - t0, error=type(exc).__name__)
        end = time.perf_counter()
        sample = Sample(t0, end - t0, status=status)
        if sse is not None:
            sample.chunks = sse.chunks
            sample.ttft = (sse.first - t0) if sse.first is not None else None
        if status >= 400:
            sample.error = f"http_{status}"
        elif sse is not None and not sse.done:
            sample.error = "stream_incomplete"
        return sample

    async def _httpx_one(self, sse: SSECounter | None, keep: list[bytes] | None) -> int:
        async with self._httpx.stream(
            "POST", self.target.endpoint(), content=self.body, headers=self.target.headers()
        ) as response:
            async for data in response.aiter_bytes():
                if sse is not None:
                    sse.feed(data)
                if keep is not None:
                    keep.append(data)
            return response.status_code

    async def aclose(self) -> None:
        if self.raw:
            for conn in self._connections.values():
                conn.close()
            self._connections.clear()
        else:
            await self._httpx.aclose()


@dataclass
class LoadResult:
    samples: list[Sample]
    duration: float  # wall seconds of the measured part
    engine: str
    late: int = 0  # open loop: sends more than 1 ms after their due time


async def closed_loop(
    target: Target, *, concurrency: int = 1, requests: int | None = None, duration: float | None = None, warmup: int = 0
) -> LoadResult:
    """``concurrency`` workers, each sending its next request when the previous one is answered."""
    if requests is None and duration is None:
        requests = 1000
    client = Client(target)
    try:
        if warmup:
            await _closed(client, concurrency, warmup, None)
        samples, elapsed = await _closed(client, concurrency, requests, duration)
    finally:
        await client.aclose()
    return LoadResult(samples, elapsed, client.engine)


async def _closed(
    client: Client, concurrency: int, requests: int | None, duration: float | None
) -> tuple[list[Sample], float]:
    samples: list[Sample] = []
    issued = 0
    started = time.perf_counter()
    deadline = started + duration if duration is not None else math.inf

    async def worker(slot: int) -> None:
        nonlocal issued
        while (requests is None or issued < requests) and time.perf_counter() < deadline:
            issued += 1
            samples.append(await client.one(slot))

    await asyncio.gather(*(worker(i) for i in range(max(1, concurrency))))
    return samples, time.perf_counter() - started


async def open_loop(
    target: Target,
    *,
    rate: float,
    requests: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    max_in_flight: int = 4096,
) -> LoadResult:
    """Requests due every 1/rate seconds whatever the answers do; each on a free connection."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if requests is None:
        requests = int(rate * (duration if duration is not None else 10.0))
    client = Client(target)
    try:
        if warmup:
            await _closed(client, min(8, max_in_flight), warmup, None)
        return await _open(client, rate, requests, max_in_flight)
    finally:
        await client.aclose()


async def _open(client: Client, rate: float, requests: int, max_in_flight: int) -> LoadResult:
    samples: list[Sample] = []
    free = list(range(max_in_flight))
    late = 0
    tasks: set[asyncio.Task] = set()
    interval = 1.0 / rate
    started = time.perf_counter()

    async def fire(slot: int, due: float) -> None:
        try:
            samples.append(await client.one(slot, due=due))
        finally:
            free.append(slot)

    for i in range(requests):
        due = started + i * interval
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 0.001:
            late += 1
        if not free:
            samples.append(Sample(due, time.perf_counter() - due, error="client_saturated"))
            continue
        task = asyncio.create_task(fire(free.pop(), due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.gather(*tasks)
    return LoadResult(samples, time.perf_counter() - started, client.engine, late)


# -- summary -------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of already sorted values (so p50 ≤ p90 ≤ p99 always holds)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 4)


def summarize(result: LoadResult) -> dict[str, Any]:
    samples = result.samples
    ok = [s for s in samples if s.ok]
    latencies = sorted(s.latency for s in ok)
    ttfts = sorted(s.ttft for s in ok if s.ttft is not None)
    errors = Counter(s.error for s in samples if s.error)
    chunks = sum(s.chunks for s in ok)
    per_stream = [s.chunks for s in ok]
    duration = result.duration or 1e-9
    return {
        "engine": result.engine,
        "requests": len(samples),
        "ok": len(ok),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "duration_s": round(duration, 4),
        "rps": round(len(ok) / duration, 2),
        "latency_ms": {
            "p50": _ms(percentile(latencies, 50)),
            "p90": _ms(percentile(latencies, 90)),
            "p99": _ms(percentile(latencies, 99)),
            "max": _ms(latencies[-1] if latencies else None),
            "mean": _ms(sum(latencies) / len(latencies) if latencies else None),
        },
        "ttft_ms": {
            "p50": _ms(percentile(ttfts, 50)),
            "p90": _ms(percentile(ttfts, 90)),
            "p99": _ms(percentile(ttfts, 99)),
        }
        if ttfts
        else None,
        "chunks": chunks,
        "chunks_per_stream": {"min": min(per_stream), "max": max(per_stream)} if chunks else None,
        "chunks_per_s": round(chunks / duration, 1) if chunks else None,
        "late": result.late,
    }


async def fetch_stream_payloads(target: Target) -> list[bytes]:
    """One streamed request; its data: payloads as received (for the pass-through check)."""
    client = Client(target)
    keep: list[bytes] = []
    try:
        sample = await client.one(0, keep=keep)
    finally:
        await client.aclose()
    if sample.error:
        raise RuntimeError(f"{target.name}: streamed request failed ({sample.error})")
    return SSECounter().payloads(b"".join(keep))


def run_sync(coro_factory: Callable[[], Awaitable[Any]]) -> Any:
    """Run a load coroutine on a fresh event loop (uvloop when installed, as the gateway uses)."""
    try:
        import uvloop

        return uvloop.run(coro_factory())
    except ImportError:
        return asyncio.run(coro_factory())
