"""Webhook delivery: the finished job, POSTed with an HMAC-SHA256 signature, retried with backoff.

Header ``X-Inferhub-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(secret, "<t>.<raw body>"). The secret is per tenant (per key for keys
without a tenant) and is shown by ``GET /v1/jobs/webhook-secret``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson
import structlog

log = structlog.get_logger("inferhub.webhooks")

SIGNATURE_HEADER = "X-Inferhub-Signature"


def webhook_secret(signing_key: bytes, tenant_id: int | None, key_id: int) -> str:
    owner = f"tenant:{tenant_id}" if tenant_id is not None else f"key:{key_id}"
    return "whsec_" + hmac.new(signing_key, f"webhook:{owner}".encode(), hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={stamp},v1={digest}"


def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
    """What a receiver runs (also in docs/jobs.md)."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp = int(parts.get("t", "0"))
    if abs(time.time() - stamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts.get("v1", ""))


async def deliver(url: str, job: dict[str, Any], secret: str, *, attempts: int = 6, first_delay: float = 1.0,
                  client: httpx.AsyncClient | None = None) -> tuple[bool, int]:  # fmt: skip
    """POST until a 2xx answer or the attempts run out; returns (delivered, attempts made)."""
    body = orjson.dumps(job)
    own = client is None
    client = client or httpx.AsyncClient(timeout=10.0)
    delay = first_delay
    try:
        for attempt in range(1, attempts + 1):
            headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, body),
                       "X-Inferhub-Job-Id": job["id"]}  # fmt: skip
            try:
                response = await client.post(url, content=body, headers=headers)
                if 200 <= response.status_code < 300:
                    log.info("webhook_delivered", job=job["id"], attempts=attempt)
                    return True, attempt
                error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            log.warning("webhook_failed", job=job["id"], attempt=attempt, error=error)
            if attempt < attempts:
                await asyncio.sleep(delay)
                delay *= 2
        return False, attempts
    finally:
        if own:
            await client.aclose()
