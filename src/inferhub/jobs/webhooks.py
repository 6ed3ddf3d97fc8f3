"""Webhook delivery: the finished job, POSTed with an HMAC-SHA256 signature, retried with backoff.

Each attempt is one POST; the schedule of attempts lives in the ``jobs`` row (see
``JobRepository.claim_webhooks``), so a delivery survives restarts and, with any number
of workers, exactly one of them makes each attempt.

Header ``X-Inferhub-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(secret, "<t>.<raw body>"). The secret is per tenant (per key for keys
without a tenant) and is shown by ``GET /v1/jobs/webhook-secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson

SIGNATURE_HEADER = "X-Inferhub-Signature"
ATTEMPTS = 8  # over about 80 minutes: 1 s, 4 s, 16 s, 64 s, 256 s, 1024 s, 3600 s apart
MAX_DELAY = 3600.0
TIMEOUT = 10.0


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


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): 1 s, 4 s, 16 s, … at most an hour."""
    return min(MAX_DELAY, 4.0 ** (attempt - 1))


async def post(client: httpx.AsyncClient, url: str, job: dict[str, Any], secret: str) -> str | None:
    """One delivery attempt, signed now; None when the receiver answered 2xx, else what went wrong."""
    body = orjson.dumps(job)
    headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, body),
               "X-Inferhub-Job-Id": job["id"]}  # fmt: skip
    try:
        response = await client.post(url, content=body, headers=headers, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return None if 200 <= response.status_code < 300 else f"HTTP {response.status_code}"
