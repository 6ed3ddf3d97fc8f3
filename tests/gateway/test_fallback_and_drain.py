"""Fallback chains, draining, aliases and model discovery on a real Inferhub process in front of fake Ollamas.

* "big" is served only by a closed port (health checks mark it unhealthy) and falls back to "small".
* "dr" is served by fakes A (priority 0) and B (priority 1); A is drained while a stream runs on it.
* "dq" is served by fakes QA and QB (one request at a time each); QA is drained while a request waits in the
  queue for either of them: the slot QA frees goes to nobody, and the waiting request is served by QB.
* "phi3:mini" is asked for as "phi3:mini:latest"; the alias "default" is created through the admin API.
* The fake D reports "disc-a" and "disc-b" but is registered only for "disc-a"; discovery adds "disc-b".
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
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
        "qa": BackgroundServer(create_fake_ollama_app(models=["dq"])).start(),
        "qb": BackgroundServer(create_fake_ollama_app(models=["dq"])).start(),
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
            ollama("dq", fakes["qa"].url, priority=0, max_concurrency=1),
            ollama("dq", fakes["qb"].url, priority=1, max_concurrency=1),
        ],
        "models": {
            "big": {"strategy": "priority", "fallbacks": ["small"]},
            "dr": {"strategy": "priority"},
            "dq": {"strategy": "priority"},
        },
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


def in_flight(http: httpx.Client, backend: str) -> int:
    return http.get(f"/api/llm-backends/{backend}").json()["live"]["in_flight"]


def test_a_queued_request_is_not_handed_a_slot_on_a_drained_backend(http, hub, fakes, backend_id):
    """Both backends busy, one request queued; drain QA and end its request: QA's slot goes to nobody."""
    qa, qb = backend_id("dq", fakes["qa"].url), backend_id("dq", fakes["qb"].url)
    slow = {"model": "dq", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    for fake in (fakes["qa"], fakes["qb"]):
        fake.app.state.chunk_delay = 60.0  # a stream holds its backend until its client goes away
    with contextlib.ExitStack() as streams, ThreadPoolExecutor(1) as pool:
        clients = {}
        for name, backend in (("qa", qa), ("qb", qb)):
            client = streams.enter_context(httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30))
            stream = streams.enter_context(client.stream("POST", "/v1/chat/completions", json=slow))
            assert stream.headers["x-inferhub-backend"] == backend
            lines = stream.iter_lines()  # kept: dropping the iterator would close the stream
            next(line for line in lines if line.startswith("data: "))  # it is streaming
            clients[name] = (client, lines)
        for fake in (fakes["qa"], fakes["qb"]):
            fake.app.state.chunk_delay = 0.0
        queued = pool.submit(chat, http, "dq")
        wait_for(lambda: http.get("/api/queue").json()["depth"].get("dq") == 1, "the request to queue")
        assert http.post(f"/api/llm-backends/{qa}/drain").status_code == 200
        wait_for(lambda: backend_status(hub, qa) == "draining", "the drain to reach the registry")
        clients["qa"][0].close()  # the client goes away: QA's request ends and frees its slot
        wait_for(lambda: in_flight(http, qa) == 0, "QA's slot to be freed rather than handed over")
        assert not queued.done(), queued.result().headers.get("x-inferhub-backend")
        assert http.get("/api/queue").json()["depth"].get("dq") == 1
        clients["qb"][0].close()  # now QB frees its slot, and the queued request gets it
        response = queued.result(timeout=30)
    try:
        assert response.status_code == 200, response.text
        assert response.headers["x-inferhub-backend"] == qb
        assert len(fakes["qa"].app.state.requests) == 1  # only the stream that was running before the drain
    finally:
        assert http.post(f"/api/llm-backends/{qa}/enable").status_code == 200


def test_a_request_queued_only_for_a_drained_backend_is_routed_again(http, hub, fakes, backend_id):
    """One backend left, busy, one request queued; drain it and end its request: the queued request is
    answered at once with 503 naming the drain (there is no other backend and no fallback), not served there."""
    qa, qb = backend_id("dq", fakes["qa"].url), backend_id("dq", fakes["qb"].url)
    assert http.post(f"/api/llm-backends/{qb}/disable").status_code == 200
    wait_for(lambda: backend_status(hub, qb) == "disabled", "QB to leave the registry's rotation")
    slow = {"model": "dq", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    fakes["qa"].app.state.chunk_delay = 60.0
    before = len(fakes["qa"].app.state.requests)
    try:
        with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client, ThreadPoolExecutor(1) as pool:
            with client.stream("POST", "/v1/chat/completions", json=slow) as stream:
                assert stream.headers["x-inferhub-backend"] == qa
                lines = stream.iter_lines()  # kept: dropping the iterator would close the stream
                next(line for line in lines if line.startswith("data: "))
                fakes["qa"].app.state.chunk_delay = 0.0
                queued = pool.submit(chat, http, "dq")
                wait_for(lambda: http.get("/api/queue").json()["depth"].get("dq") == 1, "the request to queue")
                assert http.post(f"/api/llm-backends/{qa}/drain").status_code == 200
                wait_for(lambda: backend_status(hub, qa) == "draining", "the drain to reach the registry")
                client.close()
            response = queued.result(timeout=30)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["code"] == "no_backend_available" and "draining" in error["message"]
        assert len(fakes["qa"].app.state.requests) == before + 1  # the stream only
    finally:
        fakes["qa"].app.state.chunk_delay = 0.0
        assert http.post(f"/api/llm-backends/{qa}/enable").status_code == 200
        assert http.post(f"/api/llm-backends/{qb}/enable").status_code == 200


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
