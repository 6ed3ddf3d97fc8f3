"""JSON logs: one line per event; a request's lines share its X-Request-ID from routing to completion."""

from __future__ import annotations

import time
import uuid

import httpx

from support import InferhubProcess


def test_request_id_key_prefix_model_and_backend_on_every_line(inferhub: InferhubProcess) -> None:
    request_id = f"log-check-{time.monotonic_ns()}"
    reply = httpx.post(
        f"{inferhub.url}/v1/chat/completions",
        headers={**inferhub.headers, "X-Request-ID": request_id},
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3},
        timeout=60,
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == request_id

    def mine() -> list[dict]:
        return [e for e in inferhub.log_events() if e.get("request_id") == request_id]

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "llm_request_completed" not in {e["event"] for e in mine()}:
        time.sleep(0.1)
    events = mine()
    names = [e["event"] for e in events]
    assert names.index("routing_llm_request") < names.index("llm_request_completed")
    for event in events:
        assert event["key_prefix"] == inferhub.api_key[:10]
        assert event["tenant"] == "platform"  # the bootstrap key belongs to no tenant
        assert {"timestamp", "level"} <= set(event)
    completed = next(e for e in events if e["event"] == "llm_request_completed")
    assert completed["model"] == "smollm2" and completed["backend"] == "local:smollm2"
    assert completed["completion_tokens"] > 0
    assert inferhub.api_key not in inferhub.output()  # the key itself is never logged


def test_a_tenant_key_logs_its_tenant(inferhub: InferhubProcess) -> None:
    tenant = f"logs-{uuid.uuid4().hex[:6]}"
    inferhub.cli("tenants", "create", tenant)
    key = inferhub.cli("keys", "create", "logs", "--tenant", tenant).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + 30
    while httpx.get(f"{inferhub.url}/v1/models", headers=headers).status_code != 200:  # the key arrives by NOTIFY
        assert time.monotonic() < deadline, "the new key never reached the process"
        time.sleep(0.1)
    request_id = f"tenant-log-{time.monotonic_ns()}"
    reply = httpx.post(
        f"{inferhub.url}/v1/chat/completions",
        headers={**headers, "X-Request-ID": request_id},
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=60,
    )
    assert reply.status_code == 200, reply.text
    deadline = time.monotonic() + 10
    while not (events := [e for e in inferhub.log_events() if e.get("request_id") == request_id and "tenant" in e]):
        assert time.monotonic() < deadline, "no log line of the request carries a tenant"
        time.sleep(0.1)
    assert {e["tenant"] for e in events} == {tenant}
    assert {e["key_prefix"] for e in events} == {key[:10]}


def test_every_log_line_is_json(inferhub: InferhubProcess) -> None:
    lines = [line for line in inferhub.output().splitlines() if line.strip()]
    json_lines = [line for line in lines if line.startswith("{")]
    # Only the library progress bar of the embedding model loader is not JSON.
    assert len(json_lines) >= len(lines) - 2
