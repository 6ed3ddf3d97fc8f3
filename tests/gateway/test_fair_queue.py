"""Fair queueing on a real Inferhub process: one backend with ``max_concurrency: 1`` and slow answers.

The fake Ollama holds every ``/api/chat`` for ``HOLD`` seconds (``fail_mode="hang"`` on that path only,
so health checks are unaffected). Requests beyond the one in service wait in the model's fair queue;
the assertions are about the order in which they complete, never about how long they took.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess

HOLD = 0.2
MESSAGES = [{"role": "user", "content": "hello"}]


def slow_fake(hold: float) -> BackgroundServer:
    server = BackgroundServer(create_fake_ollama_app(models=["fq", "to"])).start()
    state = server.app.state
    state.fail_mode, state.fail_paths, state.hang_seconds = "hang", {"/api/chat"}, hold
    return server


def start_hub(home, fake: BackgroundServer, model: str, env: dict[str, str] | None = None) -> InferhubProcess:
    config = {"backends": [{"model_name": model, "backend_type": "ollama", "endpoint_url": fake.url,
                            "max_concurrency": 1, "discover_models": False}]}  # fmt: skip
    return InferhubProcess(home, local_models=False, config=config, env=env).start()


@pytest.fixture(scope="module")
def fake() -> Iterator[BackgroundServer]:
    server = slow_fake(HOLD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, fake: BackgroundServer) -> Iterator[InferhubProcess]:
    process = start_hub(tmp_path_factory.mktemp("inferhub-fair-queue"), fake, "fq")
    yield process
    process.stop()


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return result


def create_key(hub: InferhubProcess, name: str) -> str:
    key = hub.cli("keys", "create", name).stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    wait_for(lambda: httpx.get(f"{hub.url}/v1/models", headers=headers).status_code == 200, f"key {name} to work")
    return key


@pytest.fixture(scope="module")
def keys(hub: InferhubProcess) -> dict[str, str]:
    return {name: create_key(hub, name) for name in ("heavy", "light")}


async def wait_async(condition, what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)
    return result


async def queued(admin: httpx.AsyncClient, model: str) -> int:
    return (await admin.get("/api/queue")).json()["depth"].get(model, 0)


async def run_and_record(client: httpx.AsyncClient, name: str, done: list[str], model: str,
                         headers: dict[str, str]) -> httpx.Response:  # fmt: skip
    response = await client.post("/v1/chat/completions", json={"model": model, "messages": MESSAGES},
                                 headers=headers)  # fmt: skip
    done.append(name)
    return response


def test_light_key_is_not_starved_by_a_heavy_key(hub, keys):
    async def scenario() -> tuple[list[str], list[httpx.Response], dict]:
        done: list[str] = []
        async with httpx.AsyncClient(base_url=hub.url, timeout=60) as client, \
                httpx.AsyncClient(base_url=hub.url, headers=hub.headers, timeout=10) as admin:  # fmt: skip
            heavy = {"Authorization": f"Bearer {keys['heavy']}"}
            light = {"Authorization": f"Bearer {keys['light']}"}
            tasks = [asyncio.create_task(run_and_record(client, f"heavy-{n}", done, "fq", heavy)) for n in range(8)]
            await wait_async(lambda: _at_least(admin, "fq", 6), "the heavy requests to queue")
            health = (await admin.get("/health")).json()
            tasks.append(asyncio.create_task(run_and_record(client, "light", done, "fq", light)))
            responses = await asyncio.gather(*tasks)
        return done, responses, health

    done, responses, health = asyncio.run(scenario())
    assert [r.status_code for r in responses] == [200] * 9, [r.text for r in responses if r.status_code != 200]
    assert health["queue"]["depth"]["fq"] >= 6
    heavy_after_light = len(done) - 1 - done.index("light")
    assert heavy_after_light >= 5, done


async def _at_least(admin: httpx.AsyncClient, model: str, depth: int) -> bool:
    return await queued(admin, model) >= depth


def test_high_priority_jumps_ahead_of_queued_normal_requests(hub, keys):
    async def scenario() -> list[str]:
        done: list[str] = []
        auth = {"Authorization": f"Bearer {keys['heavy']}"}
        async with httpx.AsyncClient(base_url=hub.url, timeout=60) as client, \
                httpx.AsyncClient(base_url=hub.url, headers=hub.headers, timeout=10) as admin:  # fmt: skip
            tasks = [asyncio.create_task(run_and_record(client, f"normal-{n}", done, "fq", auth)) for n in range(5)]
            await wait_async(lambda: _at_least(admin, "fq", 4), "the normal requests to queue")
            tasks.append(asyncio.create_task(
                run_and_record(client, "high", done, "fq", {**auth, "X-Priority": "high"})
            ))  # fmt: skip
            await wait_async(lambda: _at_least(admin, "fq", 5), "the high-priority request to queue")
            responses = await asyncio.gather(*tasks)
        assert all(r.status_code == 200 for r in responses)
        return done

    done = asyncio.run(scenario())
    # The request in service when "high" arrived may finish first; every queued normal one finishes after it.
    assert done.index("high") <= 1, done
    assert sum(1 for name in done[done.index("high") + 1 :] if name.startswith("normal")) >= 4, done


def test_bad_priority_header_is_rejected(hub):
    response = httpx.post(f"{hub.url}/v1/chat/completions", headers={**hub.headers, "X-Priority": "urgent"},
                          json={"model": "fq", "messages": MESSAGES})  # fmt: skip
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "X-Priority"


# -- weights: a party with weight 3 gets three turns for every one of a party with weight 1 -------------

QUEUED_EACH = 12


def _serve_in_fair_order(hub: InferhubProcess, fake: BackgroundServer, parties: dict[str, str]) -> list[str]:
    """Hold the only slot with a stream, queue QUEUED_EACH requests of each party, then free the slot.

    Returns the parties in the order the engine received their requests (the order the queue served
    them: one slot, so one request at a time), read from the fake's own record, not from any clock.
    """
    state = fake.app.state
    state.fail_mode, state.chunk_delay = None, 60.0  # no hang; the holder's stream waits between chunks
    first = len(state.requests)
    try:
        with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=60) as holder_client, \
                holder_client.stream("POST", "/v1/chat/completions", json={"model": "fq", "messages": MESSAGES,
                                                                           "stream": True}) as holder:  # fmt: skip
            lines = holder.iter_lines()  # kept: dropping the iterator would close the stream
            next(line for line in lines if line.startswith("data: "))
            state.chunk_delay = 0.0

            async def queue_all() -> list[httpx.Response]:
                async with httpx.AsyncClient(base_url=hub.url, timeout=60) as client, \
                        httpx.AsyncClient(base_url=hub.url, headers=hub.headers, timeout=10) as admin:  # fmt: skip

                    def send(name: str, key: str, n: int):
                        body = {"model": "fq", "messages": [{"role": "user", "content": f"{name} {n}"}]}
                        return client.post("/v1/chat/completions", json=body,
                                           headers={"Authorization": f"Bearer {key}"})  # fmt: skip

                    tasks = [
                        asyncio.create_task(send(name, key, n))
                        for n in range(QUEUED_EACH)
                        for name, key in parties.items()
                    ]
                    total = QUEUED_EACH * len(parties)
                    await wait_async(lambda: _at_least(admin, "fq", total), "every request to queue", 30)
                    holder_client.close()  # the holder's client goes away: its slot goes to the queue
                    return await asyncio.gather(*tasks)

            responses = asyncio.run(queue_all())
    finally:
        state.fail_mode, state.chunk_delay = "hang", 0.0
    assert [r.status_code for r in responses] == [200] * len(responses), [r.text for r in responses]
    served = [body["messages"][-1]["content"].split()[0] for body in state.requests[first + 1 :]]
    assert sorted(served) == sorted(name for name in parties for _ in range(QUEUED_EACH))
    return served


def _assert_three_to_one(served: list[str], heavy: str, light: str) -> None:
    # While both parties wait, every round is three turns of the heavy one and one of the light one.
    window = served[: 4 * (QUEUED_EACH // 3)]
    assert window.count(heavy) == 3 * window.count(light), served
    assert window.count(light) == QUEUED_EACH // 3, served


def test_a_key_with_weight_3_gets_three_slots_for_each_of_a_weight_1_key(hub, fake):
    keys = {}
    for name, options in (("weight3", ["--limit", "weight=3"]), ("weight1", [])):
        key = hub.cli("keys", "create", f"fair-{name}", *options).stdout.strip()
        wait_for(lambda k=key: httpx.get(f"{hub.url}/v1/models", headers={"Authorization": f"Bearer {k}"})
                 .status_code == 200, f"key {name} to work")  # fmt: skip
        keys[name] = key
    _assert_three_to_one(_serve_in_fair_order(hub, fake, keys), "weight3", "weight1")


def test_a_tenant_with_weight_3_gets_three_slots_for_each_of_a_weight_1_tenant(hub, fake):
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as admin:
        keys = {}
        for name, weight in (("tenant3", 3), ("tenant1", 1)):
            tenant = admin.post("/api/tenants", json={"name": f"fair-{name}", "limits": {"weight": weight}})
            assert tenant.status_code == 201, tenant.text
            assert tenant.json()["limits"] == {"weight": weight}
            created = admin.post(f"/api/tenants/{tenant.json()['id']}/keys", json={"name": name})
            assert created.status_code == 201, created.text
            keys[name] = created.json()["key"]
            # A tenant's keys share its turn, so a key of a tenant carries no weight of its own.
            refused = admin.post(f"/api/tenants/{tenant.json()['id']}/keys",
                                 json={"name": "own-weight", "limits": {"weight": 5}})  # fmt: skip
            assert refused.status_code == 400 and "tenant" in refused.json()["error"]["message"]
        for bad in (0, 101, 2.5, "heavy"):
            response = admin.post("/api/tenants", json={"name": "fair-bad", "limits": {"weight": bad}})
            assert response.status_code == 400, (bad, response.text)
    _assert_three_to_one(_serve_in_fair_order(hub, fake, keys), "tenant3", "tenant1")


# -- queue timeout: a second process with INFERHUB_QUEUE_TIMEOUT_SECONDS=1 ------------------------------


@pytest.fixture(scope="module")
def slow_fake_for_timeout() -> Iterator[BackgroundServer]:
    server = slow_fake(2.5)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub_with_timeout(
    tmp_path_factory: pytest.TempPathFactory, slow_fake_for_timeout: BackgroundServer
) -> Iterator[InferhubProcess]:
    process = start_hub(tmp_path_factory.mktemp("inferhub-queue-timeout"), slow_fake_for_timeout, "to",
                        env={"INFERHUB_QUEUE_TIMEOUT_SECONDS": "1"})  # fmt: skip
    yield process
    process.stop()


def test_queue_wait_past_the_timeout_gives_503_with_retry_after(hub_with_timeout):
    hub = hub_with_timeout

    async def scenario() -> tuple[httpx.Response, httpx.Response, httpx.Response, dict]:
        async with httpx.AsyncClient(base_url=hub.url, headers=hub.headers, timeout=60) as client:
            body = {"model": "to", "messages": MESSAGES}
            holder = asyncio.create_task(client.post("/v1/chat/completions", json=body))

            async def in_flight() -> bool:
                listed = (await client.get("/api/llm-backends")).json()["data"]
                return listed[0]["live"]["in_flight"] == 1

            await wait_async(in_flight, "the first request to take the only slot")
            waiting = asyncio.create_task(client.post("/v1/chat/completions", json=body))
            ollama = asyncio.create_task(client.post("/api/chat", json={**body, "stream": False}))
            await wait_async(lambda: _at_least(client, "to", 2), "the other requests to queue")
            timed_out, ollama_timed_out = await asyncio.gather(waiting, ollama)
            stats = (await client.get("/api/queue")).json()
            return await holder, timed_out, ollama_timed_out, stats

    holder, timed_out, ollama_timed_out, stats = asyncio.run(scenario())
    assert holder.status_code == 200
    assert timed_out.status_code == 503, timed_out.text
    assert int(timed_out.headers["retry-after"]) >= 1
    error = timed_out.json()["error"]
    assert error["code"] == "queue_timeout"
    assert error["type"] == "upstream_error"
    assert "'to'" in error["message"]
    assert ollama_timed_out.status_code == 503
    assert "retry-after" in ollama_timed_out.headers
    assert isinstance(ollama_timed_out.json()["error"], str)
    assert stats["timeouts_total"] == 2
    assert stats["depth"] == {}
