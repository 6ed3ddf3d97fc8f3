"""The jobs API: submit → poll → result, validation, idempotency, listing, cancel, isolation, webhooks, priority.

Against the folder's API process (``--no-worker``) and ``inferhub worker`` processes in front of fake
Ollama engines (``conftest.py``); the priority test runs its own ``inferhub serve`` with the worker inside.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from jobs_support import CHAT, SECRET_KEY, Key, Worker, finished, get_job, new_key, submit, usage_rows, wait_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.jobs.webhooks import SIGNATURE_HEADER, verify
from support import InferhubProcess


def test_submit_poll_result_and_usage(api: InferhubProcess, worker: Worker) -> None:
    key = new_key(api, "jobs-basic")
    reply = submit(api, key, CHAT, metadata={"ticket": 42})
    assert reply.status_code == 202
    job = reply.json()
    assert job["status"] == "queued" and job["id"].startswith("job_") and job["created_at"]
    done = finished(api, key.headers, job["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["choices"][0]["message"]["content"] == "echo: summarise ticket 42"
    assert done["usage"]["completion_tokens"] == done["result"]["usage"]["completion_tokens"] > 0
    assert done["metadata"] == {"ticket": 42} and done["attempts"] == 1
    [row] = usage_rows(api, key)
    assert row["endpoint"] == "/v1/jobs:chat.completions" and row["status"] == 200
    assert row["completion_tokens"] == done["usage"]["completion_tokens"]


def test_bad_submissions_are_400(api: InferhubProcess) -> None:
    key = new_key(api, "jobs-bad")
    for body, param in [
        ({"type": "painting", "body": CHAT}, "type"),
        ({"type": "chat.completions", "body": "hi"}, "body"),
        ({"type": "chat.completions", "body": {"model": "m", "messages": []}}, "body.messages"),
        ({"type": "chat.completions", "body": {**CHAT, "model": "nope"}}, "body.model"),
        ({"type": "chat.completions", "body": CHAT, "priority": 99}, "priority"),
        ({"type": "chat.completions", "body": CHAT, "webhook_url": "ftp://x"}, "webhook_url"),
    ]:
        reply = httpx.post(f"{api.url}/v1/jobs", headers=key.headers, json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["param"] == param
    assert httpx.get(f"{api.url}/v1/jobs/job_nope", headers=key.headers).status_code == 404
    assert httpx.get(f"{api.url}/v1/jobs?status=weird", headers=key.headers).status_code == 400
    inference_only = {"Authorization": f"Bearer {api.cli('keys', 'create', 'no-jobs-scope').stdout.strip()}"}
    url = f"{api.url}/v1/jobs"
    forbidden = wait_for(lambda: (r := httpx.get(url, headers=inference_only)).status_code != 401 and r)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["type"] == "permission_error"


def test_idempotency_key_returns_the_same_job(api: InferhubProcess) -> None:
    key = new_key(api, "jobs-idem")
    first = submit(api, key, CHAT, headers={"Idempotency-Key": "nightly-2026-11-23"})
    second = submit(api, key, CHAT, headers={"Idempotency-Key": "nightly-2026-11-23"})
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    third = submit(api, key, CHAT, headers={"Idempotency-Key": "another"})
    assert third.json()["id"] != first.json()["id"]


def test_listing_with_status_filter_and_cursor(api: InferhubProcess) -> None:
    key = new_key(api, "jobs-list")
    ids = [submit(api, key, CHAT).json()["id"] for _ in range(5)]
    page = httpx.get(f"{api.url}/v1/jobs?limit=2", headers=key.headers).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    page2 = httpx.get(f"{api.url}/v1/jobs?limit=2&after={page['last_id']}", headers=key.headers).json()
    assert [j["id"] for j in page2["data"]] == ids[::-1][2:4]
    queued = httpx.get(f"{api.url}/v1/jobs?status=queued&limit=100", headers=key.headers).json()["data"]
    assert {j["id"] for j in queued} >= set(ids)  # no worker is running in this test


def test_cancel_a_queued_job(api: InferhubProcess) -> None:
    key = new_key(api, "jobs-cancel-queued")
    job = submit(api, key, CHAT).json()
    cancelled = httpx.post(f"{api.url}/v1/jobs/{job['id']}/cancel", headers=key.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_cancel_a_running_job_stops_it(api: InferhubProcess, engines, worker: Worker) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_paths = "hang", 30, {"/api/chat"}
    try:
        key = new_key(api, "jobs-cancel-running")
        job = submit(api, key, {**CHAT, "model": "slow"}).json()
        wait_for(lambda: get_job(api, key.headers, job["id"])["status"] == "running")
        httpx.post(f"{api.url}/v1/jobs/{job['id']}/cancel", headers=key.headers)
        done = finished(api, key.headers, job["id"], timeout=30)
        assert done["status"] == "cancelled", done
    finally:
        slow.fail_mode, slow.fail_paths = None, None


def test_tenant_b_cannot_see_or_cancel_tenant_a_jobs(api: InferhubProcess) -> None:
    api.cli("tenants", "create", "jobs-a")
    api.cli("tenants", "create", "jobs-b")
    key_a, key_b = new_key(api, "a", tenant="jobs-a"), new_key(api, "b", tenant="jobs-b")
    job = submit(api, key_a, CHAT).json()
    assert httpx.get(f"{api.url}/v1/jobs/{job['id']}", headers=key_b.headers).status_code == 404
    assert httpx.post(f"{api.url}/v1/jobs/{job['id']}/cancel", headers=key_b.headers).status_code == 404
    listed = httpx.get(f"{api.url}/v1/jobs?limit=100", headers=key_b.headers).json()["data"]
    assert job["id"] not in {j["id"] for j in listed}
    assert get_job(api, key_a.headers, job["id"])["status"] in ("queued", "running", "succeeded")


# -- webhooks ----------------------------------------------------------------------------------------


class _Receiver:
    """A webhook endpoint that answers 500 while ``failing`` and records every delivery."""

    def __init__(self) -> None:
        self.failing = False
        self.received: list[tuple[bytes, str, int]] = []  # body, signature header, the status answered
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        self.server = BackgroundServer(app).start()
        self.url = f"{self.server.url}/hook"

    async def _hook(self, request: Request) -> Response:
        status = 500 if self.failing else 204
        self.received.append((await request.body(), request.headers.get(SIGNATURE_HEADER, ""), status))
        return Response(status_code=status)


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    hook = _Receiver()
    yield hook
    hook.server.stop()


def _secret(api: InferhubProcess, key: Key) -> str:
    return httpx.get(f"{api.url}/v1/jobs/webhook-secret", headers=key.headers).json()["secret"]


def test_webhook_is_delivered_with_a_valid_signature(api: InferhubProcess, worker: Worker, receiver) -> None:
    key = new_key(api, "jobs-hook")
    job = submit(api, key, CHAT, webhook_url=receiver.url).json()
    wait_for(lambda: receiver.received)
    body, signature, _ = receiver.received[0]
    secret = _secret(api, key)
    assert verify(secret, body, signature)
    assert not verify(secret, body + b" ", signature)
    assert not verify("whsec_wrong", body, signature)
    assert job["id"].encode() in body and b'"succeeded"' in body
    wait_for(lambda: get_job(api, key.headers, job["id"])["webhook_state"] == "delivered")


def test_webhook_retried_with_backoff_by_one_worker_at_a_time(api: InferhubProcess, worker: Worker, receiver) -> None:
    """The receiver fails until a second worker is up: each attempt is claimed by one worker, none is doubled."""
    receiver.failing = True
    key = new_key(api, "jobs-hook-retry")
    job = submit(api, key, CHAT, webhook_url=receiver.url).json()
    wait_for(lambda: receiver.received)  # the first attempt failed; the next one is scheduled
    second = Worker(api, "hook-second", INFERHUB_JOB_LEASE_SECONDS="3")
    try:
        receiver.failing = False
        wait_for(lambda: get_job(api, key.headers, job["id"])["webhook_state"] == "delivered")
    finally:
        second.stop()
        worker.stop()  # no worker is left that could deliver again
    done = get_job(api, key.headers, job["id"])
    statuses = [status for _, _, status in receiver.received]
    assert statuses[0] == 500 and statuses.count(204) == 1 and statuses[-1] == 204, statuses
    assert done["webhook_attempts"] == len(statuses)
    secret = _secret(api, key)
    for body, signature, _ in receiver.received:
        assert verify(secret, body, signature) and job["id"].encode() in body
    failed = worker.events("webhook_failed") + second.events("webhook_failed")
    assert failed and all(event["retry_in"] >= 1 for event in failed)


# -- priority ------------------------------------------------------------------------------------------


@pytest.fixture
def shared_gateway(tmp_path: Path) -> Iterator[tuple[InferhubProcess, BackgroundServer]]:
    """``inferhub serve`` with its job worker inside, so jobs and live requests share one fair queue."""
    engine = BackgroundServer(create_fake_ollama_app(models=["slow"])).start()
    config = {"backends": [{"model_name": "slow", "backend_type": "ollama", "endpoint_url": engine.url,
                            "max_concurrency": 1}]}  # fmt: skip
    env = {"INFERHUB_SECRET_KEY": SECRET_KEY, "INFERHUB_JOB_CONCURRENCY": "4"}
    process = InferhubProcess(tmp_path / "shared", local_models=False, config=config, env=env)
    try:
        with process:
            yield process, engine
    finally:
        engine.stop()


def _queue_depth(server: InferhubProcess, model: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    found = re.search(rf'^llm_queue_depth{{model="{model}"}} (\S+)$', text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_interactive_requests_go_ahead_of_queued_batch_work(shared_gateway) -> None:
    """One key, one backend slot: only the jobs' lower priority can put the live request before queued jobs."""
    server, engine = shared_gateway
    state = engine.app.state
    state.fail_mode, state.hang_seconds, state.fail_paths = "hang", 3, {"/api/chat"}
    key = new_key(server, "priority")
    for n in range(4):  # the worker takes all four: one on the backend, three waiting in the fair queue
        submit(server, key, {"model": "slow", "messages": [{"role": "user", "content": f"job {n}"}]})
    wait_for(lambda: _queue_depth(server, "slow") == 3, timeout=60)
    reply = httpx.post(f"{server.url}/v1/chat/completions", headers=key.headers, timeout=120,
                       json={"model": "slow", "messages": [{"role": "user", "content": "now please"}]})  # fmt: skip
    assert reply.status_code == 200, reply.text
    order = [call.body["messages"][-1]["content"] for call in state.calls if call.path == "/api/chat"]
    # Same key, so the same fair-queue party: without the offset the request would wait behind the three
    # queued jobs (index 4). With it, it takes the next free slot: index 1, or 2 had the running job
    # finished (and handed its slot to the next job) before the request reached the queue.
    assert order.index("now please") <= 2, order
