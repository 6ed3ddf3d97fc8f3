"""ChangeListener: LISTEN on the change channel and call back, so every replica reloads within milliseconds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import psycopg
import structlog

from inferhub.store.database import CHANGE_CHANNEL

log = structlog.get_logger(__name__)

Callback = Callable[[str], Awaitable[None]]


class ChangeListener:
    def __init__(self, database_url: str, on_change: Callback) -> None:
        self._url = database_url
        self._on_change = on_change
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listen forever, reconnecting with backoff; after a reconnect reload everything."""
        delay = 0.5
        first = True
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(self._url, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANGE_CHANNEL}")
                    self.connected.set()
                    if not first:
                        await self._on_change("*")  # changes may have been missed while away
                    first = False
                    delay = 0.5
                    async for notification in conn.notifies():
                        await self._on_change(notification.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                log.warning("change_listener_disconnected", error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
