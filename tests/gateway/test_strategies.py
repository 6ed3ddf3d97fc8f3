"""Each routing strategy, observed on a real Inferhub process in front of three fake Ollama engines.

One model per strategy, every model served by the fakes A, B and C (round-robin and latency by A and B
only). Where a request went is read from ``x-inferhub-backend`` and checked against the fakes' own
records of what they received.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess

STRATEGY_OF = {
    "prio": "priority",
    "rr": "round-robin",
    "busy": "least-busy",
    "lat": "latency",
    "sticky": "session-affinity",
}
SERVED_BY = {"prio": "abc", "rr": "ab", "busy": "ab", "lat": "ab", "sticky": "abc"}
PRIORITY = {"a": 2, "b": 0, "c": 1}  # the order for "prio": B, then C, then A
WEIGHT = {"a": 3, "b": 1}  # for "rr"


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, BackgroundServer]]:
    servers = {name: BackgroundServer(create_fake_ollama_app(models=list(STRATEGY_OF))).start() for name in "abc"}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, BackgroundServer]) -> Iterator[InferhubProcess]:
    backends: list[dict[str, Any]] = []
    for model, letters in SERVED_BY.items():
        for letter in letters:
            backend = {"model_name": model, "backend_type": "ollama", "endpoint_url": fakes[letter].url,
                       "discover_models": False}  # fmt: skip
            if model == "prio":
                backend["priority"] = PRIORITY[letter]
            if model == "rr":
                backend["weight"] = WEIGHT[letter]
            backends.append(backend)
    config = {"backends": backends, "models": {m: {"strategy": s} for m, s in STRATEGY_OF.items()}}
    process = InferhubProcess(tmp_path_factory.mktemp("inferhub-strategies"), local_models=False, config=config)
    with process:
        yield process


@pytest.fixture(scope="module")
def http(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def ids(http: httpx.Client, fakes: dict[str, BackgroundServer]) -> dict[tuple[str, str], str]:
    """(model, fake letter) → backend id, from the admin API."""
    url_to_letter = {server.url: letter for letter, server in fakes.items()}
    listed = http.get("/api/llm-backends").json()["data"]
    return {(b["model_name"], url_to_letter[b["endpoint_url"]]): str(b["id"]) for b in listed}


def chat(http: httpx.Client, model: str, text: str = "hi", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": text}], **extra}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert response.headers["x-inferhub-model"] == model
    return response


def received(fake: BackgroundServer, model: str) -> int:
    """How many chat requests for ``model`` the fake received."""
    return sum(1 for body in fake.app.state.requests if isinstance(body, dict) and body.get("model") == model)


def letter_of(ids: dict[tuple[str, str], str], model: str, backend_id: str) -> str:
    return next(letter for (m, letter), i in ids.items() if m == model and i == backend_id)


def test_priority_sends_everything_to_the_lowest_value_then_the_next(http, ids, fakes):
    before = {letter: received(fakes[letter], "prio") for letter in "abc"}
    for _ in range(6):
        assert chat(http, "prio").headers["x-inferhub-backend"] == ids[("prio", "b")]
    assert {letter: received(fakes[letter], "prio") - before[letter] for letter in "abc"} == {"a": 0, "b": 6, "c": 0}

    assert http.post(f"/api/llm-backends/{ids[('prio', 'b')]}/disable").status_code == 200
    try:
        deadline = time.monotonic() + 10
        while chat(http, "prio").headers["x-inferhub-backend"] != ids[("prio", "c")]:
            assert time.monotonic() < deadline, "disabling the preferred backend did not move traffic"
            time.sleep(0.05)
        before = {letter: received(fakes[letter], "prio") for letter in "abc"}
        for _ in range(5):
            assert chat(http, "prio").headers["x-inferhub-backend"] == ids[("prio", "c")]
        assert {letter: received(fakes[letter], "prio") - before[letter] for letter in "abc"} == {
            "a": 0, "b": 0, "c": 5,
        }  # fmt: skip
    finally:
        assert http.post(f"/api/llm-backends/{ids[('prio', 'b')]}/enable").status_code == 200


def test_weighted_round_robin_is_exactly_three_to_one(http, ids, fakes):
    before = {letter: received(fakes[letter], "rr") for letter in "ab"}
    chosen = Counter(letter_of(ids, "rr", chat(http, "rr").headers["x-inferhub-backend"]) for _ in range(40))
    assert chosen == {"a": 30, "b": 10}
    assert {letter: received(fakes[letter], "rr") - before[letter] for letter in "ab"} == {"a": 30, "b": 10}


def test_least_busy_avoids_the_backend_holding_a_slow_stream(http, hub, ids, fakes):
    for fake in fakes.values():
        fake.app.state.chunk_delay = 0.2
    text = "one two three four five six seven eight nine ten"
    body = {"model": "busy", "messages": [{"role": "user", "content": text}], "stream": True}
    try:
        with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as streamer, \
                streamer.stream("POST", "/v1/chat/completions", json=body) as stream:  # fmt: skip
            assert stream.status_code == 200
            busy = letter_of(ids, "busy", stream.headers["x-inferhub-backend"])
            idle = "b" if busy == "a" else "a"
            idle_before = received(fakes[idle], "busy")
            for _ in range(3):
                assert chat(http, "busy").headers["x-inferhub-backend"] == ids[("busy", idle)]
            assert received(fakes[idle], "busy") - idle_before == 3
            lines = [line for line in stream.iter_lines() if line.startswith("data: ")]
        assert lines[-1] == "data: [DONE]"
    finally:
        for fake in fakes.values():
            fake.app.state.chunk_delay = 0.0


def test_latency_prefers_the_backend_without_injected_delay(http, ids, fakes):
    slow = fakes["a"].app.state
    slow.hang_seconds, slow.fail_paths, slow.fail_mode = 0.5, {"/api/chat"}, "hang"
    try:
        # Warm-up: a backend never measured is tried first, so each gets measured once.
        warmup = {letter_of(ids, "lat", chat(http, "lat").headers["x-inferhub-backend"]) for _ in range(2)}
        assert warmup == {"a", "b"}
        live = {str(b["id"]): b["live"] for b in http.get("/api/llm-backends").json()["data"]}
        assert live[ids[("lat", "a")]]["latency_ewma_ms"] > live[ids[("lat", "b")]]["latency_ewma_ms"]
        slow_before = received(fakes["a"], "lat")
        for _ in range(10):
            assert chat(http, "lat").headers["x-inferhub-backend"] == ids[("lat", "b")]
        assert received(fakes["a"], "lat") == slow_before
    finally:
        slow.fail_mode, slow.fail_paths = None, None


def test_session_affinity_keeps_a_user_on_one_backend_and_spreads_users(http, ids, fakes):
    first = chat(http, "sticky", user="alice").headers["x-inferhub-backend"]
    before = {letter: received(fakes[letter], "sticky") for letter in "abc"}
    for _ in range(10):
        assert chat(http, "sticky", user="alice").headers["x-inferhub-backend"] == first
    home = letter_of(ids, "sticky", first)
    assert {letter: received(fakes[letter], "sticky") - before[letter] for letter in "abc"} == {
        letter: 10 if letter == home else 0 for letter in "abc"
    }
    # The X-Session-ID header is an affinity key too.
    body = {"model": "sticky", "messages": [{"role": "user", "content": "hi"}]}
    session = {"X-Session-ID": "conversation-7"}
    by_header = {http.post("/v1/chat/completions", headers=session, json=body).headers["x-inferhub-backend"]
                 for _ in range(5)}  # fmt: skip
    assert len(by_header) == 1

    users = [f"user-{n}" for n in range(20)]
    placement = {user: chat(http, "sticky", user=user).headers["x-inferhub-backend"] for user in users}
    assert len(set(placement.values())) >= 2
    assert all(chat(http, "sticky", user=user).headers["x-inferhub-backend"] == placement[user] for user in users)
