"""A chat model server that another process supervises (the ``--workers`` supervisor): used, not owned."""

from __future__ import annotations

import httpx


class AttachedChatModel:
    def __init__(self, alias: str, url: str) -> None:
        self.alias = alias
        self.url = url.rstrip("/")
        self.pid: int | None = None
        self.restarts = 0
        self.healthy = True

    async def start(self) -> None:
        await self.refresh()

    async def stop(self) -> None:
        return None

    async def refresh(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=3.0) as client:
                response = await client.get(f"{self.url}/health")
            self.healthy = response.status_code < 500
        except httpx.HTTPError:
            self.healthy = False
        return self.healthy
