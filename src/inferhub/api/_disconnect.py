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
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

from inferhub.errors import ClientDisconnected

T = TypeVar("T")

__all__ = ["ClientDisconnected", "unless_client_leaves"]


async def unless_client_leaves(request: Request, call: Awaitable[T]) -> T:
    """Await ``call``; if the client disconnects first, cancel it and raise :class:`ClientDisconnected`.

    The call runs in the request's own task (one watcher task beside it, no copy of the context); the
    watcher cancels that task when the client leaves, and the cancellation is turned into the error.
    """
    task = asyncio.current_task()
    assert task is not None
    left = finished = False

    def on_watcher_done(watcher: asyncio.Future[None]) -> None:
        nonlocal left
        if finished or watcher.cancelled() or watcher.exception() is not None:
            return
        left = True
        task.cancel()

    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(on_watcher_done)
    try:
        return await call
    except asyncio.CancelledError:
        if left and task.uncancel() == 0:  # our own cancellation, not the server's
            raise ClientDisconnected("the client closed the connection before the answer was ready") from None
        raise
    finally:
        finished = True
        watcher.cancel()


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass  # a body arriving late (it was read already): keep waiting
