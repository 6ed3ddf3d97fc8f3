"""UsageWriter: usage records go to PostgreSQL in batches, off the request path.

``add`` appends to a list (no I/O). A background task writes the batch every
``INFERHUB_USAGE_FLUSH_SECONDS`` (default 1 s); a graceful shutdown flushes what
is left. A hard kill loses at most the records of the last interval. A batch
that fails to write is kept and retried (up to ``max_pending`` records), and
``request_id`` is unique, so a retried batch never counts a request twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import structlog

from inferhub.tenancy.usage import UsageRecord

log = structlog.get_logger("inferhub.usage")


class UsageWriter:
    def __init__(self, write: Callable[[list[UsageRecord]], int], *, max_pending: int = 1_000_000) -> None:
        self._write = write
        self._pending: list[UsageRecord] = []
        self._oldest: float | None = None
        self.max_pending = max_pending
        self.written = 0
        self.dropped = 0
        self._lock = asyncio.Lock()

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def oldest_pending_seconds(self) -> float:
        return 0.0 if self._oldest is None else time.monotonic() - self._oldest

    def add(self, record: UsageRecord) -> None:
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        if self._oldest is None:
            self._oldest = time.monotonic()
        self._pending.append(record)

    async def flush(self) -> None:
        async with self._lock:
            if not self._pending:
                return
            batch, self._pending, oldest = self._pending, [], self._oldest
            self._oldest = None
            try:
                await asyncio.to_thread(self._write, batch)
            except Exception as exc:
                log.warning("usage_flush_failed", error=str(exc)[:300], records=len(batch))
                self._pending = batch + self._pending
                self._oldest = oldest
                return
            self.written += len(batch)

    async def run(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            await self.flush()
