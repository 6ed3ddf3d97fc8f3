"""A real fleet: three llama.cpp servers serving the embedded model as three backends of one model.

Under concurrent load one node is killed (kill -9) and another hung (SIGSTOP): no non-streaming
request fails, the bad node leaves the rotation, and it comes back once it is healthy again. The
times to detect and to readmit are printed (run with -s to see them); they are not asserted.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest

from support import InferhubProcess
from support.llama_server import LlamaServer

MODEL = "fleet-chat"


@pytest.fixture(scope="module")
def llamas(tmp_path_factory: pytest.TempPathFactory):
    log_dir = tmp_path_factory.mktemp("llamas")
    servers = [LlamaServer(log_dir).start() for _ in range(3)]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, llamas: list[LlamaServer]):
    backends = [
        {"model_name": MODEL, "backend_type": "llamacpp", "endpoint_url": s.url, "upstream_model": "smollm2",
         "timeout_seconds": 8.0, "max_concurrency": 2}
        for s in llamas
    ]  # fmt: skip
    env = {"INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0.5", "INFERHUB_CIRCUIT_FAILURE_THRESHOLD": "2",
           "INFERHUB_CIRCUIT_COOLDOWN_SECONDS": "2", "INFERHUB_RETRY_ATTEMPTS": "3"}  # fmt: skip
    process = InferhubProcess(tmp_path_factory.mktemp("fleet"), local_models=False,
                              config={"backends": backends}, env=env)  # fmt: skip
    with process:
        yield process


def _backend_ids(hub: InferhubProcess) -> dict[str, str]:
    rows = httpx.get(f"{hub.url}/api/llm-backends", headers=hub.headers).json()["data"]
    return {row["endpoint_url"]: str(row["id"]) for row in rows}


def _status(hub: InferhubProcess, backend_id: str) -> str:
    return next(b["status"] for b in hub.health()["backends"] if b["id"] == backend_id)


def _wait(predicate, timeout: float = 60.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Load:
    """Closed-loop load from a few threads; counts outcomes and which backend answered."""

    def __init__(self, hub: InferhubProcess, threads: int = 3) -> None:
        self.hub = hub
        self.threads = threads
        self.stop = threading.Event()
        self.ok = 0
        self.failed: list[str] = []
        self.by_backend: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}
        with httpx.Client(timeout=60, headers=self.hub.headers) as client:
            while not self.stop.is_set():
                reply = client.post(f"{self.hub.url}/v1/chat/completions", json=body)
                with self._lock:
                    if reply.status_code == 200:
                        self.ok += 1
                        self.by_backend[reply.headers["x-inferhub-backend"]] += 1
                    else:
                        self.failed.append(f"{reply.status_code} {reply.text[:200]}")

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for worker in self._workers:
            worker.join(90)


def test_all_three_backends_share_the_load(hub: InferhubProcess, llamas: list[LlamaServer]) -> None:
    ids = _backend_ids(hub)
    with Load(hub) as load:
        _wait(lambda: load.ok >= 24, timeout=120)
    assert load.failed == []
    assert set(load.by_backend) == set(ids.values())


def test_kill_9_loses_no_request_and_the_node_is_readmitted(hub: InferhubProcess, llamas: list[LlamaServer]) -> None:
    ids = _backend_ids(hub)
    victim = llamas[0]
    victim_id = ids[victim.url]
    with Load(hub) as load:
        _wait(lambda: load.ok >= 10, timeout=120)
        killed_at = time.monotonic()
        victim.kill()
        detect = _wait(lambda: _status(hub, victim_id) == "unhealthy", timeout=30)
        served_before = load.ok
        _wait(lambda: load.ok >= served_before + 15, timeout=120)
        dead_share = load.by_backend[victim_id]
        _wait(lambda: load.ok >= served_before + 16, timeout=60)
        assert load.by_backend[victim_id] == dead_share  # nothing more went to the dead node

        victim.start()
        restarted_at = time.monotonic()
        readmit = _wait(lambda: _status(hub, victim_id) == "healthy", timeout=60)
        back = load.by_backend[victim_id]
        _wait(lambda: load.by_backend[victim_id] > back, timeout=60)
        back_in_rotation = time.monotonic() - restarted_at
    print(f"\nkill -9: {load.ok} requests ok, {len(load.failed)} failed; detected unhealthy after {detect:.2f}s; "
          f"healthy {readmit:.2f}s after restart, serving again after {back_in_rotation:.2f}s "
          f"(total {time.monotonic() - killed_at:.1f}s)")  # fmt: skip
    assert load.failed == []
    events = [e["event"] for e in hub.log_events()]
    assert "backend_unhealthy" in events and "backend_recovered" in events


def test_a_hung_node_times_out_and_requests_succeed_elsewhere(hub: InferhubProcess, llamas: list[LlamaServer]) -> None:
    ids = _backend_ids(hub)
    victim = llamas[1]
    victim_id = ids[victim.url]
    admin = httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30)
    # The hung node first in the order, so the first requests are sure to meet it before a health check
    # (3 s timeout) takes it out of the rotation; after it the other two.
    assert admin.put(f"/api/model-routes/{MODEL}", json={"strategy": "priority"}).status_code == 200
    assert admin.patch(f"/api/llm-backends/{victim_id}", json={"priority": -1}).status_code == 200
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 3}
    _wait(lambda: admin.post("/v1/chat/completions", json=body).headers.get("x-inferhub-backend") == victim_id)
    started = len(hub.log_events())
    victim.pause()
    try:
        with Load(hub) as load:
            _wait(lambda: load.ok >= 12, timeout=120)
            _wait(lambda: _status(hub, victim_id) == "unhealthy", timeout=30)
        assert load.failed == []
        events = hub.log_events()[started:]
        timed_out = [
            e for e in events if e["event"] == "backend_failed_falling_back" and e["from_backend"] == victim_id
        ]
        # Requests did time out on the hung node, and each was sent on to another node...
        assert timed_out, "no request timed out on the hung node and fell back"
        assert all(e["code"] == "backend_timeout" for e in timed_out), timed_out
        assert all(e["to_backend"] in set(ids.values()) - {victim_id} for e in timed_out), timed_out
        # ...which answered it: every request of the load succeeded, none of them on the hung node.
        assert load.by_backend[victim_id] == 0 and load.ok >= 12
    finally:
        victim.resume()
        admin.delete(f"/api/model-routes/{MODEL}")
        admin.patch(f"/api/llm-backends/{victim_id}", json={"priority": 0})
        admin.close()
    _wait(lambda: _status(hub, victim_id) == "healthy", timeout=60)


def test_a_stream_that_breaks_midway_is_an_error_not_a_truncation(
    hub: InferhubProcess, llamas: list[LlamaServer]
) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=hub.api_key, max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Write a long story."}], max_tokens=400, stream=True,
        extra_headers={"X-Session-ID": "break-me"},
    )  # fmt: skip
    backend_id = stream.response.headers["x-inferhub-backend"]
    server = next(s for s in llamas if _backend_ids(hub)[s.url] == backend_id)
    received = 0
    with pytest.raises(openai.APIError) as raised:
        for _chunk in stream:
            received += 1
            if received == 3:
                server.kill()
    assert received >= 3
    assert "stream" in str(raised.value.message)
    server.start()
    _wait(lambda: _status(hub, backend_id) == "healthy", timeout=60)
