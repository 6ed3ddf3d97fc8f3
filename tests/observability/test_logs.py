"""JSON logs: one line per event; a request's lines share its X-Request-ID from routing to completion."""

from __future__ import annotations

import time

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
        assert {"timestamp", "level"} <= set(event)
    completed = next(e for e in events if e["event"] == "llm_request_completed")
    assert completed["model"] == "smollm2" and completed["backend"] == "local:smollm2"
    assert completed["completion_tokens"] > 0
    assert inferhub.api_key not in inferhub.output()  # the key itself is never logged


def test_every_log_line_is_json(inferhub: InferhubProcess) -> None:
    lines = [line for line in inferhub.output().splitlines() if line.strip()]
    json_lines = [line for line in lines if line.startswith("{")]
    # Only the library progress bar of the embedding model loader is not JSON.
    assert len(json_lines) >= len(lines) - 2
