"""The component checks behind ``GET /health``: database, local models, Redis."""

from __future__ import annotations

import asyncio

from inferhub.gateway.limits import Limiter
from inferhub.store import migrate
from inferhub.store.database import Database


def redis_check(counters, limiter: Limiter):
    async def check() -> dict:
        try:
            await counters.ping()
        except Exception as exc:
            return {"status": "unhealthy", "error": f"{type(exc).__name__}: {exc}"[:200],
                    "failure_mode": "fail_open" if limiter.fail_open else "fail_closed"}  # fmt: skip
        return {"status": "healthy", "failure_mode": "fail_open" if limiter.fail_open else "fail_closed"}

    return check


def database_check(db: Database):
    head = migrate.head_revision(db.url)

    def probe() -> dict:
        current = migrate.current_revision(db.url)
        return {"status": "healthy", "migrations": "current" if current == head else f"at {current}, head {head}"}

    async def check() -> dict:
        return await asyncio.to_thread(probe)

    return check


def chat_model_check(model):
    async def check() -> dict:
        if hasattr(model, "refresh"):
            await model.refresh()
        return {
            "status": "healthy" if model.healthy else "unhealthy",
            "model": model.alias,
            "pid": model.pid,
            "restarts": model.restarts,
        }

    return check


def embedding_model_check(model):
    async def check() -> dict:
        return {
            "status": "healthy" if model.healthy else "unhealthy",
            "model": model.name,
            "dimensions": model.dimensions,
        }

    return check

