"""Passive failure handling: failover, the circuit breaker, the retry budget, fair queueing and the balancer.

The first part drives a real Inferhub process in front of fake Ollamas that answer 500 on ``/api/chat``
only, so active health checks (``/api/tags``) keep passing and only real traffic opens circuits. The
second part tests the pieces in isolation, with fake clocks and plain objects (no servers).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.backends.base import Backend
from inferhub.gateway.backend_state import BackendState
from inferhub.gateway.balancer import order_backends
from inferhub.gateway.circuit_breaker import CircuitBreaker, CircuitState
from inferhub.gateway.fair_queue import FairQueue, Waiter
from inferhub.gateway.retry_budget import RetryBudget
from support import InferhubProcess

THRESHOLD = 3
COOLDOWN = 3.0
MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, BackgroundServer]]:
    servers = {name: BackgroundServer(create_fake_ollama_app(models=["cb", "doomed"])).start() for name in "abcd"}
    for server in servers.values():
        server.app.state.fail_paths = {"/api/chat"}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, fakes: dict[str, BackgroundServer]) -> Iterator[InferhubProcess]:
    def ollama(model: str, letter: str, priority: int) -> dict[str, Any]:
        return {"model_name": model, "backend_type": "ollama", "endpoint_url": fakes[letter].url,
                "priority": priority, "discover_models": False}  # fmt: skip

    config = {
        "backends": [ollama("cb", "a", 0), ollama("cb", "b", 1), ollama("doomed", "c", 0), ollama("doomed", "d", 1)],
        "models": {"cb": {"strategy": "priority"}, "doomed": {"strategy": "priority"}},
    }
    env = {
        "INFERHUB_CIRCUIT_FAILURE_THRESHOLD": str(THRESHOLD),
        "INFERHUB_CIRCUIT_COOLDOWN_SECONDS": str(COOLDOWN),
        "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0.5",
    }
    process = InferhubProcess(tmp_path_factory.mktemp("inferhub-circuit"), local_models=False, config=config, env=env)
    with process:
        yield process


@pytest.fixture(scope="module")
def http(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def backends_by_letter(http: httpx.Client, fakes: dict[str, BackgroundServer], model: str) -> dict[str, dict]:
    url_to_letter = {server.url: letter for letter, server in fakes.items()}
    listed = http.get("/api/llm-backends").json()["data"]
    return {url_to_letter[b["endpoint_url"]]: b for b in listed if b["model_name"] == model}


def chat_calls(fake: BackgroundServer) -> int:
    return sum(1 for call in fake.app.state.calls if call.path == "/api/chat")


def chat(http: httpx.Client, model: str) -> httpx.Response:
    return http.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES})


def test_failing_backend_fails_over_opens_its_circuit_and_recovers(http, hub, fakes):
    ids = {letter: str(b["id"]) for letter, b in backends_by_letter(http, fakes, "cb").items()}
    assert chat(http, "cb").headers["x-inferhub-backend"] == ids["a"]  # priority: A first

    fakes["a"].app.state.fail_mode = "500"
    for failures in range(1, THRESHOLD + 1):
        response = chat(http, "cb")
        assert response.status_code == 200, response.text
        assert response.headers["x-inferhub-backend"] == ids["b"]
        assert response.headers["x-inferhub-attempts"] == "2"
        assert response.json()["choices"][0]["message"]["content"] == "echo: hello"
        live = backends_by_letter(http, fakes, "cb")["a"]["live"]
        assert live["consecutive_failures"] == failures

    listed = backends_by_letter(http, fakes, "cb")
    a_calls = chat_calls(fakes["a"])
    for _ in range(5):  # open: no traffic to A at all (five requests take milliseconds of a 3 s cool-down)
        response = chat(http, "cb")
        assert response.status_code == 200
        assert response.headers["x-inferhub-backend"] == ids["b"]
        assert "x-inferhub-attempts" not in response.headers
    assert listed["a"]["live"]["circuit"] == "open"
    assert listed["a"]["health"] == "unhealthy"
    assert listed["b"]["live"]["circuit"] == "closed"
    assert chat_calls(fakes["a"]) == a_calls

    # After the cool-down one probe is let through; it succeeds and closes the circuit.
    fakes["a"].app.state.fail_mode = None
    deadline = time.monotonic() + 10
    while backends_by_letter(http, fakes, "cb")["a"]["live"]["circuit"] != "half_open":
        assert time.monotonic() < deadline, "the circuit never became half-open"
        time.sleep(0.05)
    assert next(b for b in hub.health()["backends"] if b["id"] == ids["a"])["circuit"] == "half_open"
    response = chat(http, "cb")
    assert response.status_code == 200
    assert response.headers["x-inferhub-backend"] == ids["a"]
    assert chat_calls(fakes["a"]) == a_calls + 1
    state = backends_by_letter(http, fakes, "cb")["a"]
    assert state["live"]["circuit"] == "closed"
    assert state["live"]["consecutive_failures"] == 0
    assert state["health"] == "healthy"
    assert all(chat(http, "cb").headers["x-inferhub-backend"] == ids["a"] for _ in range(3))


def test_all_backends_failing_names_them(http, fakes):
    urls = [fakes["c"].url, fakes["d"].url]
    for letter in "cd":
        fakes[letter].app.state.fail_mode = "500"
    try:
        first = chat(http, "doomed")
        assert first.status_code == 502, first.text
        error = first.json()["error"]
        assert error["type"] == "upstream_error"
        assert all(url in error["message"] for url in urls), error["message"]

        statuses = [first.status_code]
        while statuses[-1] != 503 and len(statuses) < 2 * THRESHOLD:
            statuses.append((response := chat(http, "doomed")).status_code)
        assert set(statuses) <= {502, 503}, statuses
        assert statuses[-1] == 503, statuses
        error = response.json()["error"]
        assert error["code"] == "no_backend_available"
        assert "retry-after" in response.headers
        assert all(url in error["message"] for url in urls), error["message"]
        assert "circuit open" in error["message"]

        ollama = http.post("/api/chat", json={"model": "doomed", "messages": MESSAGES, "stream": False})
        assert ollama.status_code == 503
        assert all(url in ollama.json()["error"] for url in urls)
    finally:
        for letter in "cd":
            fakes[letter].app.state.fail_mode = None


# -- CircuitBreaker ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_circuit_opens_after_consecutive_failures_only():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_seconds=10, clock=clock)
    assert breaker.state is CircuitState.CLOSED and breaker.allows_request()
    assert not breaker.on_failure()
    assert not breaker.on_failure()
    breaker.on_success()  # a success in between resets the count
    assert breaker.consecutive_failures == 0
    assert not breaker.on_failure()
    assert not breaker.on_failure()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.on_failure()  # the third in a row opens it
    assert breaker.state is CircuitState.OPEN
    assert not breaker.allows_request()
    assert not breaker.on_failure()  # already open: not "opened" again
    clock.advance(9.99)
    assert breaker.state is CircuitState.OPEN


def test_circuit_half_open_lets_one_probe_through():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_seconds=5, clock=clock)
    assert breaker.on_failure()
    clock.advance(5)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allows_request()
    breaker.on_attempt()
    assert not breaker.allows_request()  # the probe is in flight: nobody else
    assert breaker.on_failure()  # the probe failed: open again, for a new cool-down
    assert breaker.state is CircuitState.OPEN
    clock.advance(4)
    assert breaker.state is CircuitState.OPEN
    clock.advance(1)
    assert breaker.state is CircuitState.HALF_OPEN
    breaker.on_attempt()
    breaker.on_success()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.allows_request() and breaker.consecutive_failures == 0


def test_circuit_attempt_while_closed_is_not_a_probe():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_seconds=5, clock=clock)
    breaker.on_attempt()
    breaker.on_attempt()
    assert breaker.allows_request()
    assert not breaker.on_failure()
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED and breaker.consecutive_failures == 0


# -- RetryBudget ------------------------------------------------------------------------------------


def test_retry_budget_starts_with_a_tenth_of_capacity_and_runs_out():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.2, floor_per_second=0.0, capacity=100, clock=clock)
    assert sum(budget.try_spend() for _ in range(15)) == 10
    assert budget.exhausted == 5


def test_retry_budget_grows_with_requests():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.25, floor_per_second=0.0, capacity=4, clock=clock)  # starts with 0.4 tokens
    assert not budget.try_spend()
    for _ in range(3):
        budget.on_request()
    assert budget.try_spend()  # 0.4 + 3 * 0.25 = 1.15
    assert not budget.try_spend()
    for _ in range(100):
        budget.on_request()
    assert sum(budget.try_spend() for _ in range(10)) == 4  # capped at capacity


def test_retry_budget_refills_with_time_up_to_capacity():
    clock = FakeClock()
    budget = RetryBudget(ratio=0.0, floor_per_second=2.0, capacity=10, clock=clock)
    assert sum(budget.try_spend() for _ in range(5)) == 1
    clock.advance(1.5)  # + 3 tokens
    assert sum(budget.try_spend() for _ in range(5)) == 3
    clock.advance(3600)
    assert sum(budget.try_spend() for _ in range(20)) == 10


# -- FairQueue --------------------------------------------------------------------------------------


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def make_waiter(loop, party: str, *, priority: int = 0, weight: int = 1, allowed=("x",), name: str = "") -> Waiter:
    waiter = Waiter(party=party, priority=priority, allowed=frozenset(allowed), future=loop.create_future(),
                    weight=weight)  # fmt: skip
    waiter.future.name = name or party  # type: ignore[attr-defined]
    return waiter


def drain(queue: FairQueue, backend_id: str = "x") -> list[str]:
    out = []
    while (waiter := queue.pop_for(backend_id)) is not None:
        out.append(waiter.future.name)  # type: ignore[attr-defined]
    return out


def test_fair_queue_takes_turns_across_parties(loop):
    queue = FairQueue()
    for n in range(4):
        queue.push(make_waiter(loop, "heavy", name=f"h{n}"))
    for n in range(2):
        queue.push(make_waiter(loop, "light", name=f"l{n}"))
    queue.push(make_waiter(loop, "other", name="o0"))
    assert len(queue) == 7
    assert drain(queue) == ["h0", "l0", "o0", "h1", "l1", "h2", "h3"]
    assert len(queue) == 0


def test_fair_queue_weight_gives_consecutive_turns(loop):
    queue = FairQueue()
    for n in range(5):
        queue.push(make_waiter(loop, "big", weight=2, name=f"b{n}"))
    for n in range(3):
        queue.push(make_waiter(loop, "small", name=f"s{n}"))
    assert drain(queue) == ["b0", "b1", "s0", "b2", "b3", "s1", "b4", "s2"]


def test_fair_queue_serves_higher_priority_classes_first(loop):
    queue = FairQueue()
    queue.push(make_waiter(loop, "p", name="normal-1"))
    queue.push(make_waiter(loop, "p", priority=-10, name="low"))
    queue.push(make_waiter(loop, "q", name="normal-2"))
    queue.push(make_waiter(loop, "p", priority=10, name="high"))
    assert drain(queue) == ["high", "normal-1", "normal-2", "low"]


def test_fair_queue_respects_allowed_backends(loop):
    queue = FairQueue()
    queue.push(make_waiter(loop, "p", allowed=("a",), name="only-a"))
    queue.push(make_waiter(loop, "p", allowed=("a", "b"), name="a-or-b"))
    queue.push(make_waiter(loop, "q", allowed=("a",), name="q-only-a"))
    assert queue.pop_for("c") is None
    assert drain(queue, "b") == ["a-or-b"]
    assert drain(queue, "a") == ["q-only-a", "only-a"]  # p just had its turn (a-or-b): q goes first


def test_fair_queue_remove_and_skip_abandoned_waiters(loop):
    queue = FairQueue()
    gone = make_waiter(loop, "p", name="gone")
    cancelled = make_waiter(loop, "p", name="cancelled")
    for waiter in (gone, cancelled, make_waiter(loop, "p", name="kept")):
        queue.push(waiter)
    queue.remove(gone)
    queue.remove(gone)  # twice is harmless
    cancelled.future.cancel()
    assert len(queue) == 2
    assert drain(queue) == ["kept"]
    assert queue.oldest_wait() >= 0


# -- balancer.order_backends ------------------------------------------------------------------------


def fleet(*specs: dict[str, Any]) -> tuple[list[Backend], dict[str, BackendState]]:
    backends, states = [], {}
    for spec in specs:
        spec = dict(spec)
        in_flight = spec.pop("in_flight", 0)
        latency = spec.pop("latency", None)
        backend = Backend(model_name="m", backend_type="ollama", endpoint_url=f"http://{spec['id']}", **spec)
        states[backend.id] = BackendState(breaker=CircuitBreaker(), max_concurrency=8, in_flight=in_flight,
                                          latency_ewma_ms=latency)  # fmt: skip
        backends.append(backend)
    return backends, states


def ids_of(ordered: list[Backend]) -> list[str]:
    return [b.id for b in ordered]


def test_order_by_priority():
    backends, states = fleet({"id": "1", "priority": 5}, {"id": "2", "priority": -1}, {"id": "3", "priority": 5})
    ordered = order_backends("priority", backends, lambda b: states[b.id])
    assert ids_of(ordered) == ["2", "1", "3"]


def test_order_least_busy_then_latency():
    backends, states = fleet({"id": "1", "in_flight": 2, "latency": 1.0}, {"id": "2", "in_flight": 0, "latency": 50.0},
                             {"id": "3", "in_flight": 0, "latency": 10.0})  # fmt: skip
    assert ids_of(order_backends("least-busy", backends, lambda b: states[b.id])) == ["3", "2", "1"]
    states["3"].engine_waiting = 5  # the engine's own queue counts as load
    assert ids_of(order_backends("least-busy", backends, lambda b: states[b.id])) == ["2", "1", "3"]


def test_order_by_latency_measures_new_backends_first():
    backends, states = fleet({"id": "1", "latency": 80.0}, {"id": "2", "latency": 20.0}, {"id": "3"})
    assert ids_of(order_backends("latency", backends, lambda b: states[b.id])) == ["3", "2", "1"]


def test_smooth_weighted_round_robin():
    backends, states = fleet({"id": "a", "weight": 3}, {"id": "b", "weight": 1})
    heads = [order_backends("round-robin", backends, lambda b: states[b.id])[0].id for _ in range(8)]
    assert heads == ["a", "a", "b", "a"] * 2  # interleaved, not "a a a b"
    second = order_backends("round-robin", backends, lambda b: states[b.id])
    assert sorted(ids_of(second)) == ["a", "b"]  # the rest follow as failover


def test_session_affinity_is_stable_and_spreads():
    backends, states = fleet({"id": "1"}, {"id": "2"}, {"id": "3"})

    def head(key: str | None, group=backends) -> str:
        return order_backends("session-affinity", group, lambda b: states[b.id], key)[0].id

    assert len({head("alice") for _ in range(10)}) == 1
    placement = {f"user-{n}": head(f"user-{n}") for n in range(30)}
    assert len(set(placement.values())) == 3
    # Rendezvous hashing: removing one backend moves only the keys that were on it.
    survivors = [b for b in backends if b.id != "3"]
    for key, home in placement.items():
        if home != "3":
            assert head(key, survivors) == home
    states["1"].in_flight = 3
    states["2"].in_flight = 1
    assert head(None) == "3"  # no key: least-busy


def test_single_or_no_backend_is_returned_as_is():
    backends, states = fleet({"id": "1"})
    for strategy in ("priority", "latency", "round-robin", "least-busy", "session-affinity"):
        assert ids_of(order_backends(strategy, backends, lambda b: states[b.id], "k")) == ["1"]
        assert order_backends(strategy, [], lambda b: states[b.id]) == []


def test_every_strategy_returns_a_permutation():
    backends, states = fleet(*({"id": str(n), "weight": n + 1, "priority": -n} for n in range(5)))
    for strategy in ("priority", "latency", "round-robin", "least-busy", "session-affinity"):
        ordered = order_backends(strategy, backends, lambda b: states[b.id], "key")
        assert Counter(ids_of(ordered)) == Counter(b.id for b in backends)
