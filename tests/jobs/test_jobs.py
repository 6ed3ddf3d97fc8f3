"""Durable jobs: submit → poll → result, idempotency, cancel, crash recovery, webhooks, isolation, priority.

One PostgreSQL, one API process without a job worker (``--no-worker`` mode) and separate
``inferhub worker`` processes started and killed by the tests, in front of fake Ollama engines.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.jobs.webhooks import SIGNATURE_HEADER, verify
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from support import InferhubProcess
from support.inferhub_process import BIN


def _wait(predicate, timeout: float = 60.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, BackgroundServer]]:
    fast = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    slow = BackgroundServer(create_fake_ollama_app(models=["slow"])).start()
    flaky = BackgroundServer(create_fake_ollama_app(models=["flaky"])).start()
    yield {"fast": fast, "slow": slow, "flaky": flaky}
    for server in (fast, slow, flaky):
        server.stop()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("jobs-pg"))
    yield pg.start()
    pg.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory, engines, database) -> Iterator[InferhubProcess]:
    config = {"backends": [
        {"model_name": "m", "backend_type": "ollama", "endpoint_url": engines["fast"].url},
        {"model_name": "slow", "backend_type": "ollama", "endpoint_url": engines["slow"].url, "max_concurrency": 1},
        {"model_name": "flaky", "backend_type": "ollama", "endpoint_url": engines["flaky"].url},
    ]}  # fmt: skip
    env = {"INFERHUB_DATABASE_URL": database, "INFERHUB_RUN_JOB_WORKER": "false",
           "INFERHUB_SECRET_KEY": "uJfQ1Qm3o6YQHqH1B9s2QfFZ5oOZ8e6dY5V8N2bU0Ww="}  # fmt: skip
    process = InferhubProcess(tmp_path_factory.mktemp("jobs-api"), local_models=False, config=config, env=env)
    with process:
        yield process


class Worker:
    """An ``inferhub worker`` process against the same database and configuration as the API."""

    def __init__(self, api: InferhubProcess, name: str, **env: str) -> None:
        self.log = api.home / f"worker-{name}.log"
        self._file = self.log.open("ab")
        self.process = subprocess.Popen([str(BIN / "inferhub"), "worker"], env={**api.env, **env}, cwd=api.home,
                                        stdout=self._file, stderr=subprocess.STDOUT)  # fmt: skip
        _wait(lambda: "job_worker_started" in self.log.read_text(errors="replace"), timeout=60)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)
        self._file.close()


@pytest.fixture
def worker(api: InferhubProcess) -> Iterator[Worker]:
    w = Worker(api, "default", INFERHUB_JOB_LEASE_SECONDS="3")
    yield w
    w.stop()


def _key(api: InferhubProcess, name: str, tenant: str | None = None) -> str:
    args = ["keys", "create", name, "--scope", "jobs", "--scope", "inference"]
    if tenant:
        args += ["--tenant", tenant]
    key = api.cli(*args).stdout.strip()
    _wait(lambda: httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": f"Bearer {key}"}).status_code == 200)
    return key


def _submit(api: InferhubProcess, key: str, body: dict[str, Any], **extra: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}", **extra.pop("headers", {})}
    return httpx.post(f"{api.url}/v1/jobs", headers=headers, json={"type": "chat.completions", "body": body, **extra})


def _job(api: InferhubProcess, key: str, job_id: str) -> dict[str, Any]:
    return httpx.get(f"{api.url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"}).json()


def _done(api: InferhubProcess, key: str, job_id: str, timeout: float = 60) -> dict[str, Any]:
    return _wait(lambda: (j := _job(api, key, job_id))["status"] in ("succeeded", "failed", "cancelled") and j,
                 timeout=timeout)  # fmt: skip


CHAT = {"model": "m", "messages": [{"role": "user", "content": "summarise ticket 42"}]}


def test_submit_poll_result_and_usage(api: InferhubProcess, worker: Worker) -> None:
    key = _key(api, "jobs-basic")
    reply = _submit(api, key, CHAT, metadata={"ticket": 42})
    assert reply.status_code == 202
    job = reply.json()
    assert job["status"] == "queued" and job["id"].startswith("job_") and job["created_at"]
    done = _done(api, key, job["id"])
    assert done["status"] == "succeeded"
    assert done["result"]["choices"][0]["message"]["content"] == "echo: summarise ticket 42"
    assert done["usage"]["completion_tokens"] == done["result"]["usage"]["completion_tokens"] > 0
    assert done["metadata"] == {"ticket": 42} and done["attempts"] == 1
    log = httpx.get(f"{api.url}/api/request-log?limit=1000", headers=api.headers).json()["data"]
    assert sum(1 for row in log if row["endpoint"] == "/v1/jobs:chat.completions" and row["status"] == 200) >= 1


def test_bad_submissions_are_400(api: InferhubProcess) -> None:
    key = _key(api, "jobs-bad")
    headers = {"Authorization": f"Bearer {key}"}
    for body, param in [
        ({"type": "painting", "body": CHAT}, "type"),
        ({"type": "chat.completions", "body": "hi"}, "body"),
        ({"type": "chat.completions", "body": {"model": "m", "messages": []}}, "body.messages"),
        ({"type": "chat.completions", "body": {**CHAT, "model": "nope"}}, "body.model"),
        ({"type": "chat.completions", "body": CHAT, "priority": 99}, "priority"),
        ({"type": "chat.completions", "body": CHAT, "webhook_url": "ftp://x"}, "webhook_url"),
    ]:
        reply = httpx.post(f"{api.url}/v1/jobs", headers=headers, json=body)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["param"] == param
    assert httpx.get(f"{api.url}/v1/jobs/job_nope", headers=headers).status_code == 404
    assert httpx.get(f"{api.url}/v1/jobs?status=weird", headers=headers).status_code == 400
    inference_only = api.cli("keys", "create", "no-jobs-scope").stdout.strip()
    time.sleep(0.5)
    assert httpx.get(f"{api.url}/v1/jobs", headers={"Authorization": f"Bearer {inference_only}"}).status_code == 403


def test_idempotency_key_returns_the_same_job(api: InferhubProcess) -> None:
    key = _key(api, "jobs-idem")
    first = _submit(api, key, CHAT, headers={"Idempotency-Key": "nightly-2026-11-23"})
    second = _submit(api, key, CHAT, headers={"Idempotency-Key": "nightly-2026-11-23"})
    assert first.status_code == 202 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    third = _submit(api, key, CHAT, headers={"Idempotency-Key": "another"})
    assert third.json()["id"] != first.json()["id"]


def test_listing_with_status_filter_and_cursor(api: InferhubProcess) -> None:
    key = _key(api, "jobs-list")
    ids = [_submit(api, key, CHAT).json()["id"] for _ in range(5)]
    headers = {"Authorization": f"Bearer {key}"}
    page = httpx.get(f"{api.url}/v1/jobs?limit=2", headers=headers).json()
    assert [j["id"] for j in page["data"]] == ids[::-1][:2] and page["has_more"] is True
    page2 = httpx.get(f"{api.url}/v1/jobs?limit=2&after={page['last_id']}", headers=headers).json()
    assert [j["id"] for j in page2["data"]] == ids[::-1][2:4]
    queued = httpx.get(f"{api.url}/v1/jobs?status=queued&limit=100", headers=headers).json()["data"]
    assert {j["id"] for j in queued} >= set(ids)  # no worker is running in this test


def test_cancel_a_queued_job(api: InferhubProcess) -> None:
    key = _key(api, "jobs-cancel-queued")
    job = _submit(api, key, CHAT).json()
    cancelled = httpx.post(f"{api.url}/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {key}"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


def test_cancel_a_running_job_stops_it(api: InferhubProcess, engines, worker: Worker) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_paths = "hang", 30, {"/api/chat"}
    try:
        key = _key(api, "jobs-cancel-running")
        job = _submit(api, key, {**CHAT, "model": "slow"}).json()
        _wait(lambda: _job(api, key, job["id"])["status"] == "running")
        httpx.post(f"{api.url}/v1/jobs/{job['id']}/cancel", headers={"Authorization": f"Bearer {key}"})
        done = _done(api, key, job["id"], timeout=30)
        assert done["status"] == "cancelled", done
    finally:
        slow.fail_mode, slow.fail_paths = None, None


def test_tenant_b_cannot_see_or_cancel_tenant_a_jobs(api: InferhubProcess) -> None:
    api.cli("tenants", "create", "jobs-a")
    api.cli("tenants", "create", "jobs-b")
    key_a, key_b = _key(api, "a", tenant="jobs-a"), _key(api, "b", tenant="jobs-b")
    job = _submit(api, key_a, CHAT).json()
    b = {"Authorization": f"Bearer {key_b}"}
    assert httpx.get(f"{api.url}/v1/jobs/{job['id']}", headers=b).status_code == 404
    assert httpx.post(f"{api.url}/v1/jobs/{job['id']}/cancel", headers=b).status_code == 404
    assert job["id"] not in {j["id"] for j in httpx.get(f"{api.url}/v1/jobs?limit=100", headers=b).json()["data"]}
    assert _job(api, key_a, job["id"])["status"] in ("queued", "running", "succeeded")


def test_a_worker_killed_mid_job_loses_nothing(api: InferhubProcess, engines) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_times = "hang", 4, 1  # only the first chat call hangs
    slow.fail_paths = {"/api/chat"}
    try:
        key = _key(api, "jobs-crash")
        job = _submit(api, key, {**CHAT, "model": "slow"}).json()
        first = Worker(api, "doomed", INFERHUB_JOB_LEASE_SECONDS="3")
        _wait(lambda: _job(api, key, job["id"])["status"] == "running")
        first.stop(signal.SIGKILL)
        second = Worker(api, "rescuer", INFERHUB_JOB_LEASE_SECONDS="3")
        try:
            done = _done(api, key, job["id"], timeout=60)
        finally:
            second.stop()
    finally:
        slow.fail_mode, slow.fail_times, slow.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 2
    log = httpx.get(f"{api.url}/api/request-log?limit=1000", headers=api.headers).json()["data"]
    mine = [r for r in log if r["endpoint"] == "/v1/jobs:chat.completions" and r["model"] == "slow"
            and r["status"] == 200]  # fmt: skip
    assert len(mine) == 1  # exactly one usage record, though the job ran twice


def test_transient_errors_are_retried_with_backoff(api: InferhubProcess, engines, worker: Worker) -> None:
    flaky = engines["flaky"].app.state  # its own engine: no other test's jobs use up the failures
    flaky.fail_mode, flaky.fail_times, flaky.fail_paths = "500", 2, {"/api/chat"}
    try:
        key = _key(api, "jobs-retry")
        job = _submit(api, key, {**CHAT, "model": "flaky"}).json()
        done = _done(api, key, job["id"], timeout=60)
    finally:
        flaky.fail_mode, flaky.fail_times, flaky.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 3, done


def test_webhook_is_delivered_with_a_valid_signature(api: InferhubProcess, worker: Worker) -> None:
    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers.get(SIGNATURE_HEADER, "")))
        return Response(status_code=204)

    receiver = BackgroundServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])])).start()
    try:
        key = _key(api, "jobs-hook")
        job = _submit(api, key, CHAT, webhook_url=f"{receiver.url}/hook").json()
        _wait(lambda: received, timeout=60)
    finally:
        receiver.stop()
    body, signature = received[0]
    secret = httpx.get(f"{api.url}/v1/jobs/webhook-secret", headers={"Authorization": f"Bearer {key}"}).json()["secret"]
    assert verify(secret, body, signature)
    assert not verify(secret, body + b" ", signature)
    assert not verify("whsec_wrong", body, signature)
    assert job["id"].encode() in body and b'"succeeded"' in body
    _wait(lambda: _job(api, key, job["id"])["webhook_state"] == "delivered")


def test_interactive_requests_go_ahead_of_queued_batch_work(api: InferhubProcess, engines, worker: Worker) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_paths = "hang", 0.4, {"/api/chat"}
    try:
        key = _key(api, "jobs-priority")
        ids = [_submit(api, key, {**CHAT, "model": "slow"}).json()["id"] for _ in range(8)]
        _wait(lambda: _job(api, key, ids[0])["status"] != "queued")
        reply = httpx.post(f"{api.url}/v1/chat/completions", headers=api.headers, timeout=60,
                           json={"model": "slow", "messages": [{"role": "user", "content": "now please"}]})  # fmt: skip
        finished_before = sum(1 for i in ids if _job(api, key, i)["status"] == "succeeded")
        assert reply.status_code == 200
        # One backend, one slot, 8 batch jobs queued: the interactive request took the next free slot.
        assert finished_before <= 3
        for job_id in ids:
            assert _done(api, key, job_id, timeout=90)["status"] == "succeeded"
    finally:
        slow.fail_mode, slow.fail_paths = None, None


def test_sigterm_hands_running_jobs_back(api: InferhubProcess, engines) -> None:
    slow = engines["slow"].app.state
    slow.fail_mode, slow.hang_seconds, slow.fail_times, slow.fail_paths = "hang", 20, 1, {"/api/chat"}
    try:
        key = _key(api, "jobs-release")
        job = _submit(api, key, {**CHAT, "model": "slow"}).json()
        first = Worker(api, "leaving", INFERHUB_JOB_LEASE_SECONDS="60")
        _wait(lambda: _job(api, key, job["id"])["status"] == "running")
        first.stop(signal.SIGTERM)  # graceful: the job goes back to the queue at once, not after the lease
        assert _job(api, key, job["id"])["status"] == "queued"
        assert "job_released" in first.log.read_text()
        second = Worker(api, "taking-over")
        try:
            done = _done(api, key, job["id"], timeout=60)
        finally:
            second.stop()
    finally:
        slow.fail_mode, slow.fail_times, slow.fail_paths = None, None, None
    assert done["status"] == "succeeded" and done["attempts"] == 1
