"""Webhook delivery: the finished job, POSTed with an HMAC-SHA256 signature, retried with backoff.

``WebhookCourier`` (one per worker) claims due deliveries and makes one POST per claim;
the schedule of attempts lives in the ``jobs`` row (``JobRepository.claim_webhooks``),
so a delivery survives restarts and, with any number of workers, one of them makes
each attempt. At least once: a worker that dies between a POST and recording it
leaves the claim to run out, and the attempt is made again.

Header ``X-Inferhub-Signature: t=<unix seconds>,v1=<hex>`` where ``hex`` is
HMAC-SHA256(secret, "<t>.<raw body>"). The secret is per tenant (per key for keys
without a tenant) and is shown by ``GET /v1/jobs/webhook-secret``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from typing import Any

import httpx
import orjson
import structlog

from inferhub.store.jobs import JobRepository

log = structlog.get_logger("inferhub.webhooks")

SIGNATURE_HEADER = "X-Inferhub-Signature"
ATTEMPTS = 8  # over about 80 minutes: 1 s, 4 s, 16 s, 64 s, 256 s, 1024 s, 3600 s apart
MAX_DELAY = 3600.0
TIMEOUT = 10.0
CLAIM_SECONDS = 60.0  # longer than one POST may take
PARALLEL = 16


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


class WebhookCourier:
    """Claims due deliveries from PostgreSQL, sends each (one attempt per claim), records the outcome."""

    def __init__(self, repo: JobRepository, signing_key: bytes, owner: str) -> None:
        self.repo = repo
        self.signing_key = signing_key
        self.owner = owner
        self._wake = asyncio.Event()
        self._sending: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """A delivery is due now (a job of this worker just finished)."""
        self._wake.set()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            try:
                while True:
                    self._wake.clear()
                    due: list[dict[str, Any]] = []
                    free = PARALLEL - len(self._sending)
                    if free > 0:
                        try:
                            due = await asyncio.to_thread(self.repo.claim_webhooks, self.owner, CLAIM_SECONDS, free)
                        except Exception as exc:
                            log.warning("webhook_claim_failed", error=str(exc))
                    for job in due:
                        task = asyncio.create_task(self._send(client, job))
                        self._sending[job["id"]] = task
                        task.add_done_callback(lambda _t, job_id=job["id"]: self._sent(job_id))
                    if not due:  # retries fall due on their own: look again within a second
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            finally:
                for task in self._sending.values():
                    task.cancel()
                await asyncio.gather(*self._sending.values(), return_exceptions=True)

    def _sent(self, job_id: str) -> None:
        self._sending.pop(job_id, None)
        self._wake.set()

    async def _send(self, client: httpx.AsyncClient, job: dict[str, Any]) -> None:
        secret = webhook_secret(self.signing_key, job["tenant_id"], job["key_id"])
        public = {k: v for k, v in job.items() if k not in ("tenant_id", "key_id", "webhook_state", "webhook_attempts")}
        attempt = job["webhook_attempts"] + 1
        error = await post(client, job["webhook_url"], public, secret)
        retry_in = None if error is None or attempt >= ATTEMPTS else retry_delay(attempt)
        if error is None:
            log.info("webhook_delivered", job=job["id"], attempts=attempt)
        else:
            log.warning("webhook_failed", job=job["id"], attempt=attempt, error=error, retry_in=retry_in)
        try:
            await asyncio.to_thread(lambda: self.repo.webhook_attempted(job["id"], self.owner, delivered=error is None,
                                                                        retry_in=retry_in))  # fmt: skip
        except Exception as exc:  # the claim runs out and the attempt is made again: at least once, never lost
            log.warning("webhook_record_failed", job=job["id"], error=str(exc))
