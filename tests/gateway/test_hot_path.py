"""The request path never waits on the database: with PostgreSQL gone, requests are still served."""

from __future__ import annotations

import signal
import time

import httpx
import psutil
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory):
    fake = BackgroundServer(create_fake_ollama_app(models=["llama3.1:8b"])).start()
    config = {"backends": [{"model_name": "llama3.1:8b", "backend_type": "ollama", "endpoint_url": fake.url}]}
    process = InferhubProcess(tmp_path_factory.mktemp("hot-path"), local_models=False, config=config)
    with process:
        yield process
    fake.stop()


def test_requests_are_served_from_memory_while_the_database_is_down(fleet: InferhubProcess) -> None:
    chat = {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "still here"}]}
    assert httpx.post(f"{fleet.url}/v1/chat/completions", headers=fleet.headers, json=chat).status_code == 200

    pid = int((fleet.home / "postgres" / "postmaster.pid").read_text().splitlines()[0])
    psutil.Process(pid).send_signal(signal.SIGINT)  # fast shutdown of the embedded PostgreSQL
    psutil.Process(pid).wait(30)

    for _ in range(20):
        reply = httpx.post(f"{fleet.url}/v1/chat/completions", headers=fleet.headers, json=chat)
        assert reply.status_code == 200
        assert reply.json()["choices"][0]["message"]["content"] == "echo: still here"
    assert httpx.get(f"{fleet.url}/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401

    health = httpx.get(f"{fleet.url}/health", headers=fleet.headers)
    assert health.status_code == 503
    assert health.json()["components"]["database"]["status"] == "unhealthy"

    deadline = time.monotonic() + 30  # the batched stats writer tries (and fails) to flush every second
    while "backend_stats_flush_failed" not in [e["event"] for e in fleet.log_events()]:
        assert time.monotonic() < deadline, "the stats writer never reported its failed flush"
        time.sleep(0.2)
