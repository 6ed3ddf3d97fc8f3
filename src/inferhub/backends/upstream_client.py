"""UpstreamClient: one pooled HTTP/1.1 client per upstream engine, on aiohttp.

Why aiohttp here when the SDKs (and Inferhub's other outbound calls) use httpx: this client is on every
proxied request. Measured on this 2-core machine, POSTs to a static nginx at concurrency 16 cost about
1,300-1,450 µs of CPU per request with ``httpx.AsyncClient`` (its pool checks every connection's socket on
every request, and anyio wraps each operation) and about 80 µs with aiohttp (docs/performance.md). The
whole gateway's budget is about 330 µs per request.

Adapters see only this module's types: a response is its status and bytes, a stream yields bytes as they
arrive, and every transport fault is a :class:`TransportError` (:class:`ConnectFailed`, :class:`TimedOut`),
so no library's exceptions leak into error mapping.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import aiohttp


class TransportError(Exception):
    """The upstream could not be reached or stopped answering; ``kind`` names what happened."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class ConnectFailed(TransportError):
    pass


class TimedOut(TransportError):
    pass


def _transport_error(exc: BaseException) -> TransportError:
    if isinstance(exc, TimeoutError):  # aiohttp's connect and socket-read timeouts are TimeoutErrors
        return TimedOut(type(exc).__name__)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectFailed(type(exc).__name__)
    return TransportError(type(exc).__name__)


_FAULTS = (aiohttp.ClientError, TimeoutError, OSError)


def _dropped_unanswered(exc: BaseException) -> bool:
    """The engine closed or reset the connection before any answer: a kept-alive connection it had just
    closed, or (llama-cpp-python, for a moment after a request failed mid-response) a new one it drops.
    Such a request is sent once more, on a new connection; a refused connection is never retried."""
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return True
    return isinstance(exc, aiohttp.ClientOSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)


@dataclass(frozen=True, slots=True)
class UpstreamResponse:
    status_code: int
    content: bytes


class UpstreamStream:
    """An open response whose body is read as it arrives; ``aclose`` it (reading to the end keeps the
    connection for the next request)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code = response.status

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except _FAULTS as exc:
            raise _transport_error(exc) from None

    async def aread(self) -> bytes:
        try:
            return await self._response.read()
        except _FAULTS as exc:
            raise _transport_error(exc) from None

    async def aclose(self) -> None:
        self._response.release()

    async def abort(self) -> None:
        """Close the response and its connection, which is not reused."""
        self._response.close()


class UpstreamClient:
    """Requests to one engine's base URL. ``timeout`` bounds the connect and each wait for response bytes
    (not the whole response: a long stream that keeps sending is fine)."""

    def __init__(self, base_url: str, timeout: float, *, connect_timeout: float | None = None,
                 max_connections: int = 1000) -> None:  # fmt: skip
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._connect_timeout = min(timeout, 10.0) if connect_timeout is None else connect_timeout
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    @property
    def is_closed(self) -> bool:
        return self._closed

    def _timeout(self, timeout: float | None) -> aiohttp.ClientTimeout:
        read = self.timeout if timeout is None else timeout
        connect = min(read, self._connect_timeout)
        return aiohttp.ClientTimeout(total=None, connect=connect, sock_connect=connect, sock_read=read)

    def _open_session(self) -> aiohttp.ClientSession:
        # Created on first use: an aiohttp session belongs to the running event loop.
        if self._session is None or self._session.closed:
            self._closed = False
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, limit_per_host=0, ttl_dns_cache=60),
                timeout=self._timeout(None),
                # Not trust_env: with it aiohttp looks up proxy variables and reads ~/.netrc in a thread on
                # every request (a quarter of the gateway's CPU in the profile). Engines are on the internal
                # network; HTTP(S)_PROXY does not apply to them (docs/routing.md).
                trust_env=False,
                auto_decompress=True,
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> UpstreamResponse:
        session = self._open_session()
        options = {"timeout": self._timeout(timeout)} if timeout is not None else {}  # else the session's
        for attempt in (1, 2):
            answered = False
            try:
                async with session.request(method, self.base_url + path, data=content, headers=headers,
                                           allow_redirects=False, **options) as response:  # fmt: skip
                    answered = True
                    return UpstreamResponse(response.status, await response.read())
            except _FAULTS as exc:
                if attempt == 1 and not answered and _dropped_unanswered(exc):
                    continue
                raise _transport_error(exc) from None
        raise AssertionError("unreachable")

    async def get(self, path: str, *, headers: Mapping[str, str] | None = None,
                  timeout: float | None = None) -> UpstreamResponse:  # fmt: skip
        return await self.request("GET", path, headers=headers, timeout=timeout)

    async def stream(self, method: str, path: str, *, content: bytes | None = None,
                     headers: Mapping[str, str] | None = None) -> UpstreamStream:  # fmt: skip
        """Send the request and wait for the status line and headers; the body is read from the stream."""
        session = self._open_session()
        for attempt in (1, 2):
            try:
                response = await session.request(method, self.base_url + path, data=content, headers=headers,
                                                 allow_redirects=False)  # fmt: skip
            except _FAULTS as exc:
                if attempt == 1 and _dropped_unanswered(exc):
                    continue
                raise _transport_error(exc) from None
            return UpstreamStream(response)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self._closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports
