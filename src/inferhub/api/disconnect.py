"""Cancel a non-streaming upstream call when the client goes away.

Starlette cancels a streaming response when its client disconnects, but a plain request handler runs
to its end: the engine kept generating an answer nobody would read, holding a backend slot. Once the
body has been read, the next ASGI message of the request is ``http.disconnect``, sent when the client
closes the connection (or after the response is complete). Waiting for it beside the upstream call
tells us the client left; the call is then cancelled, which closes the upstream connection, and the
request ends as a 499 (nginx's "client closed request") with its usage record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from inferhub.errors import APIError

T = TypeVar("T")


class ClientDisconnected(APIError):
    status_code = 499
    code = "client_closed_request"


async def unless_client_leaves(request: Request, call: Awaitable[T]) -> T:
    """Await ``call``; if the client disconnects first, cancel it and raise :class:`ClientDisconnected`."""
    work = asyncio.ensure_future(call)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():  # the client left, or this request was cancelled itself
            work.cancel()
            with contextlib.suppress(BaseException):
                await work  # let the call give back its backend slot before we go on
        gone.cancel()
    if gone.done() and not gone.cancelled() and work.cancelled():
        raise ClientDisconnected("the client closed the connection before the answer was ready")
    return work.result()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass  # a body arriving late (it was read already): keep waiting
