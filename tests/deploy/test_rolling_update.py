"""A rolling restart behind a real nginx loses no request, and streams pass through unbuffered.

nginx (the Debian binary) runs on a free loopback port with deploy/nginx/inferhub.conf, only the
addresses changed (plain HTTP here): same balancing, timeouts, buffering and retry settings. Behind
it run two `inferhub serve` replicas sharing one PostgreSQL and one Redis (the real one on
127.0.0.1:6379, database 11), with a fake Ollama as their backend. While client threads send plain
and streamed chat completions through nginx, replica A is stopped with SIGTERM and started again on
the same port, then replica B: not one request may fail, and both replicas must have served both
kinds of request.

Unbuffered streaming is checked without a clock: the upstream sends the first chunk of a stream and
holds the rest until the test has received that chunk through nginx. A proxy that buffered would
hold the first chunk back too, and the test would fail at its read deadline.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from deploy_support import Nginx, require, which

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from support import InferhubProcess

API_KEY = "ih-test-rolling-update-key"
SECRET_KEY = "pQ1c7m8Qk6dCwz3E5rS0YyJk0T1h2bXnV4aLq9uR6eI="
REDIS_URL = "redis://127.0.0.1:6379/11"
MODEL = "m"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "one two three four five"}], "max_tokens": 16}
REPLY = "echo: one two three four five"
MAX_LOAD_SECONDS = 300  # the load threads stop by themselves after this, whatever happens
HOLD_SECONDS = 120  # the gated upstream lets go by itself after this, so nothing hangs forever
FIRST_CHUNK_DEADLINE = 60  # read deadline of the streaming checks, well under HOLD_SECONDS


def wait_until(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def is_ready(url: str) -> bool:
    return httpx.get(f"{url}/health/ready", timeout=2).status_code == 200


def stream_events(response: httpx.Response) -> Iterator[dict[str, Any] | None]:
    """The parsed `data:` events of an OpenAI stream; None for `data: [DONE]`."""
    for line in response.iter_lines():
        if line == "data: [DONE]":
            yield None
        elif line.startswith("data: "):
            yield orjson.loads(line.removeprefix("data: "))


def content_of(event: dict[str, Any]) -> str:
    return "".join((choice.get("delta") or {}).get("content") or "" for choice in event.get("choices", []))


class GatedUpstream:
    """ASGI wrapper of the fake Ollama: while armed, the next /api/chat response sends its first body
    chunk, then holds every later one until ``release`` is set (or HOLD_SECONDS passed)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""  # set once served
        self.armed = threading.Event()
        self.holding = threading.Event()  # the first chunk went out, the rest waits
        self.release = threading.Event()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/chat" or not self.armed.is_set():
            await self.app(scope, receive, send)
            return
        self.armed.clear()
        loop = asyncio.get_running_loop()
        first_sent = False

        async def gated_send(message) -> None:
            nonlocal first_sent
            if first_sent and message["type"] == "http.response.body":
                deadline = loop.time() + HOLD_SECONDS
                while not self.release.is_set() and loop.time() < deadline:
                    await asyncio.sleep(0.01)
            await send(message)
            if message["type"] == "http.response.body" and message.get("body") and not first_sent:
                first_sent = True
                self.holding.set()

        await self.app(scope, receive, gated_send)

    def arm(self) -> None:
        self.release.clear()
        self.holding.clear()
        self.armed.set()

    def disarm(self) -> None:
        self.armed.clear()
        self.release.set()


@pytest.fixture(scope="module")
def redis_db() -> str:
    try:
        import redis
    except ImportError:
        pytest.skip("redis-py is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}): the replicas must share a real Redis")
    client.flushdb()  # counters of an earlier run
    client.close()
    return REDIS_URL


@pytest.fixture(scope="module")
def gate() -> Iterator[GatedUpstream]:
    gated = GatedUpstream(create_fake_ollama_app(models=[MODEL]))
    server = BackgroundServer(gated).start()
    gated.url = server.url
    yield gated
    gated.disarm()
    server.stop()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    postgres = EmbeddedPostgres(tmp_path_factory.mktemp("rolling-pg") / "pg")
    url = postgres.start()
    yield url
    postgres.stop()


def replica(home: Path, fake_url: str, database_url: str, redis_url: str, port: int | None = None) -> InferhubProcess:
    config = {"backends": [{"model_name": MODEL, "backend_type": "ollama", "endpoint_url": fake_url}]}
    env = {"INFERHUB_DATABASE_URL": database_url, "INFERHUB_REDIS_URL": redis_url, "INFERHUB_SECRET_KEY": SECRET_KEY,
           "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "1", "INFERHUB_SHUTDOWN_DRAIN_SECONDS": "2"}  # fmt: skip
    process = InferhubProcess(home, api_key=API_KEY, local_models=False, config=config, env=env)
    if port is not None:  # restart on the address nginx knows
        process.port = port
        process.url = f"http://127.0.0.1:{port}"
        process.env["INFERHUB_PORT"] = str(port)
    return process


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, gate: GatedUpstream, database_url: str, redis_db: str):
    require(which("nginx"), "nginx (Debian package nginx)")
    replicas: dict[str, InferhubProcess] = {}
    nginx = None
    try:
        # One after the other: the first applies the migrations, the second finds them done.
        for name in ("a", "b"):
            home = tmp_path_factory.mktemp(f"rolling-{name}")
            replicas[name] = replica(home, gate.url, database_url, redis_db).start()
            wait_until(lambda p=replicas[name]: is_ready(p.url), f"replica {name} ready")
        upstreams = [f"127.0.0.1:{replicas[name].port}" for name in ("a", "b")]
        nginx = Nginx(tmp_path_factory.mktemp("rolling-nginx"), upstreams).start()
        yield nginx, replicas
    finally:
        if nginx is not None:
            nginx.stop()
        for process in replicas.values():
            process.stop()


class Load:
    """Client threads sending chat completions through nginx until stopped: plain ones (with a model
    listing now and then) and streamed ones, each marked in nginx's log by its X-Test-Load header."""

    def __init__(self, url: str, plain: int = 2, streamed: int = 1) -> None:
        self.url = url
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.ok = {"plain": 0, "stream": 0}
        self.failures: list[str] = []
        kinds = ["plain"] * plain + ["stream"] * streamed
        self.threads = [threading.Thread(target=self._run, args=(kind,), daemon=True) for kind in kinds]

    def _run(self, kind: str) -> None:
        deadline = time.monotonic() + MAX_LOAD_SECONDS
        headers = {"Authorization": f"Bearer {API_KEY}", "X-Test-Load": kind}
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            i = 0
            while not self.stop_event.is_set() and time.monotonic() < deadline:
                i += 1
                try:
                    outcome = self._stream(client) if kind == "stream" else self._plain(client, i)
                except httpx.HTTPError as exc:
                    outcome = f"{kind}: {type(exc).__name__}: {exc}"
                with self.lock:
                    if outcome is None:
                        self.ok[kind] += 1
                    else:
                        self.failures.append(outcome)
                time.sleep(0.005)

    @staticmethod
    def _plain(client: httpx.Client, i: int) -> str | None:
        if i % 5:
            response = client.post("/v1/chat/completions", json=CHAT)
            good = response.status_code == 200 and response.json()["choices"][0]["message"]["content"] == REPLY
        else:
            response = client.get("/v1/models")
            good = response.status_code == 200
        return None if good else f"plain: {response.status_code} {response.text[:200]}"

    @staticmethod
    def _stream(client: httpx.Client) -> str | None:
        with client.stream("POST", "/v1/chat/completions", json={**CHAT, "stream": True}) as response:
            if response.status_code != 200:
                return f"stream: {response.status_code} {response.read()[:200]!r}"
            events = list(stream_events(response))
        text = "".join(content_of(event) for event in events if event is not None)
        if events[-1:] != [None] or text != REPLY:
            return f"stream: cut short or wrong: {text!r}, last event {events[-1:]}"
        return None

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(35)

    def count(self, kind: str | None = None) -> int:
        with self.lock:
            return sum(self.ok.values()) + len(self.failures) if kind is None else self.ok[kind]


def test_rolling_restart_behind_nginx_fails_no_request(cluster, gate: GatedUpstream, database_url: str,
                                                        redis_db: str) -> None:  # fmt: skip
    nginx, replicas = cluster
    for process in replicas.values():  # both on the one Redis, not on per-process counters
        assert process.health()["components"]["redis"]["status"] == "healthy"
    with Load(nginx.url) as load:
        wait_until(lambda: load.count("plain") >= 20 and load.count("stream") >= 10, "load to start", 30)
        for name in ("a", "b"):
            old = replicas[name]
            assert old.stop(signal.SIGTERM) == 0, old.output()[-2000:]
            new = replica(old.home, gate.url, database_url, redis_db, port=old.port).start()
            replicas[name] = new
            wait_until(lambda p=new: is_ready(p.url), f"restarted replica {name} ready")
            # Counted once the old process is gone: the requests it finished while stopping are logged.
            served_by_old = {kind: nginx.served_by(new.port, kind) for kind in ("plain", "stream")}
            # Back in rotation before the next one goes, the step the documented procedure checks:
            # nginx left the replica out for fail_timeout (10 s) after its refused connections, and
            # stopping the other replica before then would leave no live upstream.
            wait_until(lambda p=new.port, n=served_by_old: all(nginx.served_by(p, k) > n[k] for k in n),
                       f"nginx routing plain and streamed requests to the restarted {name}", 60)  # fmt: skip
        ok_after_restarts = dict(load.ok)
        wait_until(lambda: all(load.ok[k] > ok_after_restarts[k] for k in load.ok), "load after the restarts", 30)
    assert load.ok["plain"] > 50 and load.ok["stream"] > 20, f"too little load to mean anything: {load.ok}"
    assert not load.failures, (
        f"{len(load.failures)} of {load.count()} requests failed: {load.failures[:5]}\n"
        f"nginx's log of them: {[entry for entry in nginx.access_log() if entry[0] != '200'][:10]}\n"
        f"nginx's errors: {nginx.errors()[-20:]}"
    )
    # Both replicas served both kinds of request (nginx logs the upstream that answered).
    for name, process in replicas.items():
        for kind in ("plain", "stream"):
            assert nginx.served_by(process.port, kind) > 0, f"replica {name} served no {kind} request"


def test_streamed_chat_arrives_chunk_by_chunk_through_nginx(cluster, gate: GatedUpstream) -> None:
    nginx, _ = cluster
    headers = {"Authorization": f"Bearer {API_KEY}"}
    timeout = httpx.Timeout(30, read=FIRST_CHUNK_DEADLINE)
    gate.arm()
    try:
        with httpx.stream("POST", f"{nginx.url}/v1/chat/completions", json={**CHAT, "stream": True},
                          headers=headers, timeout=timeout) as response:  # fmt: skip
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            events = stream_events(response)
            first = ""
            try:
                while not first:
                    event = next(events)
                    assert event is not None, "the stream ended before any content"
                    first = content_of(event)
            except httpx.ReadTimeout:
                pytest.fail("the first chunk never arrived while the upstream held the rest: buffered between "
                            "the client and the replica")  # fmt: skip
            # The upstream has sent one chunk and holds every other: this one came through on its own.
            assert gate.holding.is_set() and not gate.release.is_set()
            gate.release.set()
            rest = list(events)
    finally:
        gate.disarm()
    assert rest[-1] is None, "no data: [DONE]"
    assert first + "".join(content_of(e) for e in rest if e is not None) == REPLY
    assert REPLY.startswith(first) and first != REPLY


def test_replicas_share_limits_through_redis(cluster, gate: GatedUpstream) -> None:
    """A key allowed one request at a time: while a stream holds its slot on replica A, replica B refuses."""
    _, replicas = cluster
    a, b = replicas["a"], replicas["b"]
    key = a.cli("keys", "create", "rolling-one-at-a-time", "--limit", "concurrency=1").stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    for process in (a, b):  # the new key reaches both caches (NOTIFY)
        wait_until(lambda p=process: httpx.get(f"{p.url}/v1/models", headers=headers).status_code == 200,
                   "the new key on every replica")  # fmt: skip
    gate.arm()
    try:
        with httpx.stream("POST", f"{a.url}/v1/chat/completions", json={**CHAT, "stream": True}, headers=headers,
                          timeout=httpx.Timeout(30, read=FIRST_CHUNK_DEADLINE)) as held:  # fmt: skip
            assert held.status_code == 200, held.read()
            events = stream_events(held)
            next(e for e in events if e is not None and content_of(e))  # A holds the key's one slot now
            refused = httpx.post(f"{b.url}/v1/chat/completions", json=CHAT, headers=headers, timeout=30)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"]["code"] == "concurrency_exceeded"
            gate.release.set()
            assert list(events)[-1] is None
    finally:
        gate.disarm()
    wait_until(lambda: httpx.post(f"{b.url}/v1/chat/completions", json=CHAT, headers=headers,
                                  timeout=30).status_code == 200, "the slot freed on replica B")  # fmt: skip
