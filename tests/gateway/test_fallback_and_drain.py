"""Fallback chains, draining, aliases and model discovery on a real Inferhub process in front of fake Ollamas.

* "big" is served only by a closed port (health checks mark it unhealthy) and falls back to "small".
* "dr" is served by fakes A (priority 0) and B (priority 1); A is drained while a stream runs on it.
* "phi3:mini" is asked for as "phi3:mini:latest"; the alias "default" is created through the admin API.
* The fake D reports "disc-a" and "disc-b" but is registered only for "disc-a"; discovery adds "disc-b".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess, free_port

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, BackgroundServer]]:
    servers = {
        "a": BackgroundServer(create_fake_ollama_app(models=["dr", "small", "phi3:mini"])).start(),
        "b": BackgroundServer(create_fake_ollama_app(models=["dr"])).start(),
        "d": BackgroundServer(create_fake_ollama_app(models=["disc-a", "disc-b"])).start(),
    }
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, BackgroundServer], closed_url: str
) -> Iterator[InferhubProcess]:
    def ollama(model: str, url: str, **extra: Any) -> dict[str, Any]:
        return {"model_name": model, "backend_type": "ollama", "endpoint_url": url, "discover_models": False, **extra}

    config = {
        "backends": [
            ollama("big", closed_url, timeout_seconds=2.0),
            ollama("small", fakes["a"].url),
            ollama("dr", fakes["a"].url, priority=0),
            ollama("dr", fakes["b"].url, priority=1),
            ollama("phi3:mini", fakes["a"].url),
            ollama("disc-a", fakes["d"].url, discover_models=True),
        ],
        "models": {"big": {"strategy": "priority", "fallbacks": ["small"]}, "dr": {"strategy": "priority"}},
    }
    env = {"INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0.5", "INFERHUB_DISCOVERY_INTERVAL_SECONDS": "0.5"}
    process = InferhubProcess(tmp_path_factory.mktemp("inferhub-fallback"), local_models=False, config=config, env=env)
    with process:
        yield process


@pytest.fixture(scope="module")
def http(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def backend_id(http: httpx.Client) -> Callable[[str, str], str]:
    listed = http.get("/api/llm-backends").json()["data"]
    by_key = {(b["model_name"], b["endpoint_url"]): str(b["id"]) for b in listed}
    return lambda model, url: by_key[(model, url)]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def backend_status(hub: InferhubProcess, backend_id: str) -> str | None:
    return next((b["status"] for b in hub.health()["backends"] if b["id"] == backend_id), None)


def chat(http: httpx.Client, model: str, **extra: Any) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES, **extra})


# -- fallback chain ---------------------------------------------------------------------------------


def test_unavailable_model_falls_back_to_its_fallback(http, hub, fakes, backend_id, closed_url):
    wait_for(lambda: backend_status(hub, backend_id("big", closed_url)) == "unhealthy", "'big' to be unhealthy")
    response = chat(http, "big")
    assert response.status_code == 200, response.text
    assert response.headers["x-inferhub-fallback-from"] == "big"
    assert response.headers["x-inferhub-model"] == "small"
    assert response.headers["x-inferhub-backend"] == backend_id("small", fakes["a"].url)
    assert response.json()["choices"][0]["message"]["content"] == "echo: hello there"
    assert fakes["a"].app.state.requests[-1]["model"] == "small"


def test_fallback_on_the_ollama_route(http, fakes, backend_id):
    response = http.post("/api/chat", json={"model": "big", "messages": MESSAGES, "stream": False})
    assert response.status_code == 200, response.text
    assert response.headers["x-inferhub-fallback-from"] == "big"
    assert response.headers["x-inferhub-model"] == "small"
    assert response.json()["message"]["content"] == "echo: hello there"
    assert response.json()["done"] is True

    with http.stream("POST", "/api/chat", json={"model": "big", "messages": MESSAGES}) as stream:
        assert stream.status_code == 200
        assert stream.headers["x-inferhub-fallback-from"] == "big"
        assert stream.headers["x-inferhub-model"] == "small"
        lines = [json.loads(line) for line in stream.iter_lines() if line.strip()]
    assert lines[-1]["done"] is True
    assert "".join(line["message"]["content"] for line in lines) == "echo: hello there"


def test_a_served_model_does_not_report_a_fallback(http):
    response = chat(http, "small")
    assert response.status_code == 200
    assert "x-inferhub-fallback-from" not in response.headers


# -- draining ---------------------------------------------------------------------------------------


def test_drain_finishes_in_flight_stream_and_moves_new_requests(http, hub, fakes, backend_id):
    a_id, b_id = backend_id("dr", fakes["a"].url), backend_id("dr", fakes["b"].url)
    assert chat(http, "dr").headers["x-inferhub-backend"] == a_id  # priority: A first
    words = "one two three four five six seven eight nine ten eleven twelve"
    body = {"model": "dr", "messages": [{"role": "user", "content": words}], "stream": True}
    fakes["a"].app.state.chunk_delay = 0.2
    try:
        with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as streamer, \
                streamer.stream("POST", "/v1/chat/completions", json=body) as stream:  # fmt: skip
            assert stream.status_code == 200
            assert stream.headers["x-inferhub-backend"] == a_id
            events = stream.iter_lines()
            first = next(line for line in events if line.startswith("data: "))

            drained = http.post(f"/api/llm-backends/{a_id}/drain")
            assert drained.status_code == 200, drained.text
            assert drained.json()["draining"] is True
            assert drained.json()["health"] == "draining"
            wait_for(lambda: backend_status(hub, a_id) == "draining", "/health to show A draining")
            entry = next(b for b in hub.health()["backends"] if b["id"] == a_id)
            assert entry["in_flight"] == 1  # drained while the stream is still running on it
            b_before = len(fakes["b"].app.state.requests)
            for _ in range(4):
                response = chat(http, "dr")
                assert response.status_code == 200
                assert response.headers["x-inferhub-backend"] == b_id
            assert len(fakes["b"].app.state.requests) - b_before == 4

            rest = [line for line in events if line.startswith("data: ")]
    finally:
        fakes["a"].app.state.chunk_delay = 0.0
    assert rest[-1] == "data: [DONE]"
    chunks = [json.loads(line.removeprefix("data: ")) for line in [first, *rest[:-1]]]
    content = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert content == f"echo: {words}"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"

    enabled = http.post(f"/api/llm-backends/{a_id}/enable")
    assert enabled.status_code == 200
    assert enabled.json()["draining"] is False
    wait_for(lambda: chat(http, "dr").headers["x-inferhub-backend"] == a_id, "A to get traffic again")
    assert backend_status(hub, a_id) == "healthy"


# -- aliases and :latest ----------------------------------------------------------------------------


def test_alias_created_through_the_admin_api_is_served(http, fakes):
    assert http.put("/api/model-aliases/default", json={"model": "small"}).status_code == 200
    try:
        response = wait_for(lambda: (r := chat(http, "default")).status_code == 200 and r, "the alias to route")
        assert response.headers["x-inferhub-model"] == "small"
        assert "x-inferhub-fallback-from" not in response.headers  # an alias is not a fallback
        assert fakes["a"].app.state.requests[-1]["model"] == "small"
        assert "default" in [m["id"] for m in http.get("/v1/models").json()["data"]]
        ollama = http.post("/api/chat", json={"model": "default", "messages": MESSAGES, "stream": False})
        assert ollama.status_code == 200
        assert ollama.json()["model"] == "default"
    finally:
        assert http.delete("/api/model-aliases/default").status_code == 204
    wait_for(lambda: chat(http, "default").status_code == 404, "the deleted alias to stop routing")


def test_latest_tag_matches_the_untagged_name(http, fakes):
    response = chat(http, "phi3:mini:latest")
    assert response.status_code == 200, response.text
    assert response.headers["x-inferhub-model"] == "phi3:mini"
    assert "x-inferhub-fallback-from" not in response.headers
    assert fakes["a"].app.state.requests[-1]["model"] == "phi3:mini"
    ollama = http.post("/api/chat", json={"model": "phi3:mini:latest", "messages": MESSAGES, "stream": False})
    assert ollama.status_code == 200


# -- discovery --------------------------------------------------------------------------------------


def test_discovery_adds_models_the_endpoint_reports(http, fakes):
    def listed() -> bool:
        names = [m["id"] for m in http.get("/v1/models").json()["data"]]
        return "disc-b" in names

    wait_for(listed, "disc-b in /v1/models", timeout=15)
    names = [m["id"] for m in http.get("/v1/models").json()["data"]]
    assert "disc-a" in names
    assert names.count("disc-b") == 1
    assert "disc-b" in [m["name"] for m in http.get("/api/tags").json()["models"]]
    response = chat(http, "disc-b")
    assert response.status_code == 200, response.text
    assert response.headers["x-inferhub-model"] == "disc-b"
    assert fakes["d"].app.state.requests[-1]["model"] == "disc-b"
    # Registered models are not duplicated by discovery.
    assert chat(http, "disc-a").status_code == 200
