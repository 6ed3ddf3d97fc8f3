"""``inferhub serve --workers 2``: two API processes on one port, metrics aggregated, a dead worker replaced."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess


@pytest.fixture(scope="module")
def held() -> Iterator[BackgroundServer]:
    """An engine whose chat requests wait while ``app.state.hang_seconds`` is high (0 lets them answer)."""
    fake = BackgroundServer(create_fake_ollama_app(models=["held"])).start()
    fake.app.state.fail_paths = {"/api/chat"}
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory, held: BackgroundServer):
    fake = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    config = {"backends": [{"model_name": "m", "backend_type": "ollama", "endpoint_url": fake.url},
                           {"model_name": "held", "backend_type": "ollama", "endpoint_url": held.url,
                            "max_concurrency": 1, "discover_models": False}]}  # fmt: skip
    process = InferhubProcess(tmp_path_factory.mktemp("workers"), local_models=False, config=config,
                              env={"INFERHUB_WORKERS": "2"})  # fmt: skip
    with process:
        yield process
    fake.stop()


def _chat_count(pool: InferhubProcess) -> float:
    text = httpx.get(f"{pool.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "llm_requests_total" and sample.labels == {
                "endpoint": "/v1/chat/completions", "status": "200"
            }:  # fmt: skip
                return sample.value
    return 0.0


def _gauge_sums(pool: InferhubProcess, model: str) -> dict[str, float]:
    """In flight and queued for ``model``, as one scrape reports them (summed over its series)."""
    sums = {"llm_requests_in_flight": 0.0, "llm_queue_depth": 0.0}
    text = httpx.get(f"{pool.url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in sums and sample.labels.get("model") == model:
                sums[sample.name] += sample.value
    return sums


def _worker_pids(pool: InferhubProcess) -> set[int]:
    return {e["pid"] for e in pool.log_events() if e.get("event") == "inferhub_started"}


def _send(pool: InferhubProcess, count: int) -> list[int]:
    statuses = []
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    for _ in range(count):  # a new connection each time, so the kernel spreads them over the workers
        statuses.append(httpx.post(f"{pool.url}/v1/chat/completions", headers=pool.headers, json=body).status_code)
    return statuses


def test_two_workers_serve_and_metrics_count_every_request(pool: InferhubProcess) -> None:
    deadline = time.monotonic() + 60
    while len(_worker_pids(pool)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_worker_pids(pool)) == 2
    before = _chat_count(pool)
    assert _send(pool, 40) == [200] * 40
    served_by = {e["pid"] for e in pool.log_events() if e.get("event") == "llm_request_completed"}
    assert served_by == _worker_pids(pool)  # both workers took requests
    assert _chat_count(pool) - before == 40  # whichever worker answers the scrape sees all of them


def test_a_burst_of_keep_alive_connections_is_spread_over_both_workers(pool: InferhubProcess) -> None:
    """16 clients connect at once and keep their connections (as SDKs do): both workers must get some.

    With one socket shared by the workers, the worker that woke first accepted the whole burst, and every
    request of those keep-alive clients stayed on it. Each worker's own SO_REUSEPORT socket fixes that.
    """
    deadline = time.monotonic() + 60
    while len(_worker_pids(pool)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    barrier = threading.Barrier(16)

    def client(index: int) -> list[int]:
        with httpx.Client(base_url=pool.url, headers=pool.headers, timeout=30) as http:
            barrier.wait()
            return [
                http.post("/v1/chat/completions", json=body, headers={"X-Request-ID": f"burst-{index}-{n}"}).status_code
                for n in range(3)
            ]

    with ThreadPoolExecutor(16) as executor:
        statuses = [status for result in executor.map(client, range(16)) for status in result]
    assert statuses == [200] * 48
    pid_of = {
        e["request_id"]: e["pid"] for e in pool.log_events()
        if e.get("event") == "llm_request_completed" and str(e.get("request_id", "")).startswith("burst-")
    }  # fmt: skip
    assert len(pid_of) == 48
    assert set(pid_of.values()) == _worker_pids(pool)
    for index in range(16):  # keep-alive: one connection, one worker, for all three requests of a client
        assert len({pid_of[f"burst-{index}-{n}"] for n in range(3)}) == 1


def test_in_flight_and_queue_gauges_are_summed_over_the_workers(pool: InferhubProcess, held) -> None:
    """12 requests to a backend that takes one at a time per worker and holds them: each worker has one in
    flight and queues the rest. Every scrape, whichever worker answers it, must account for all 12."""
    deadline = time.monotonic() + 60
    while len(_worker_pids(pool)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    held.app.state.hang_seconds = 600.0
    held.app.state.fail_mode = "hang"
    body = {"model": "held", "messages": [{"role": "user", "content": "wait"}]}

    def send(index: int) -> int:  # its own connection: the kernel spreads connections over the workers
        headers = {**pool.headers, "X-Request-ID": f"held-{index}"}
        return httpx.post(f"{pool.url}/v1/chat/completions", headers=headers, json=body, timeout=120).status_code

    with ThreadPoolExecutor(12) as executor:
        futures = [executor.submit(send, i) for i in range(12)]
        try:
            expected = {"llm_requests_in_flight": 2.0, "llm_queue_depth": 10.0}
            deadline = time.monotonic() + 60
            while (seen := [_gauge_sums(pool, "held") for _ in range(4)]) != [expected] * 4:
                assert time.monotonic() < deadline, f"scrapes saw {seen}, expected {expected} in each"
                time.sleep(0.2)
        finally:
            held.app.state.hang_seconds = 0.0  # the held requests answer
        assert [f.result() for f in futures] == [200] * 12
    served_by = {
        e["pid"] for e in pool.log_events()
        if e.get("event") == "llm_request_completed" and str(e.get("request_id", "")).startswith("held-")
    }  # fmt: skip
    assert served_by == _worker_pids(pool)  # both workers held requests (the sums above needed both)


def test_a_killed_worker_is_replaced(pool: InferhubProcess) -> None:
    victim = sorted(_worker_pids(pool))[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        events = pool.log_events()
        if any(e.get("event") == "worker_exited" and e.get("worker_pid") == victim for e in events) and len(
            [e for e in events if e.get("event") == "inferhub_started"]
        ) >= 3:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the worker was not replaced")
    assert _send(pool, 10) == [200] * 10
