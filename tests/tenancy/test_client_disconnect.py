"""A client that goes away mid-stream still leaves its usage record and gives back its concurrency slot;
one that goes away before a non-streaming answer has its upstream call cancelled.

Starlette cancels the request's task when the client disconnects; everything the gateway does after that
(queue the usage record, settle the limits in Redis) must survive the cancellation. With Redis counters and
a key limited to one request at a time, a leaked slot would refuse every later request of the key.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from support import InferhubProcess

MODEL = "llama3.1:8b"
REDIS_URL = "redis://127.0.0.1:6379/9"  # a database of its own: test_limits uses 7, the limiter stores 15


def _redis_or_skip() -> None:
    try:
        import redis
    except ImportError:  # pragma: no cover
        pytest.skip("redis-py is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}): this test needs a real Redis")
    client.flushdb()  # counters of an earlier run use the same key ids
    client.close()


@pytest.fixture(scope="module")
def fake(kit) -> Iterator[Any]:
    server = kit.start_fake_ollama([MODEL])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, fake, kit) -> Iterator[InferhubProcess]:
    _redis_or_skip()
    process = InferhubProcess(
        tmp_path_factory.mktemp("disconnect"),
        api_key=kit.PLATFORM_KEY,
        local_models=False,
        config={"backends": kit.ollama_backends(fake.url, [MODEL])},
        env=kit.fast_env(INFERHUB_REDIS_URL=REDIS_URL, INFERHUB_LIMITS_FAILURE_MODE="fail_closed"),
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def platform(hub, kit) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key)
    yield api
    api.close()


def test_a_stream_dropped_mid_way_leaves_its_record_and_frees_its_slot(hub, fake, platform, kit):
    tenant = platform.tenant("disconnect-team")
    key = platform.key(tenant["id"], "one-at-a-time", limits={"concurrency": 1})
    body = {"model": MODEL, "messages": [{"role": "user", "content": "a long answer, word by word"}],
            "stream": True}  # fmt: skip
    fake.app.state.chunk_delay = 60.0  # the stream waits between chunks: it is still running when we leave
    try:
        auth = {"Authorization": f"Bearer {key['key']}"}
        with (
            httpx.Client(base_url=hub.url, headers=auth, timeout=30) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as stream,
        ):
            assert stream.status_code == 200
            lines = stream.iter_lines()  # kept: dropping the iterator would close the stream
            assert next(line for line in lines if line.startswith("data: "))
            fake.app.state.chunk_delay = 0.0
            # While it streams, the key's one slot is taken.
            kit.assert_openai_error(kit.chat(hub.url, key["key"], model=MODEL), 429, "concurrency_exceeded")
            client.close()  # the client goes away mid-stream
    finally:
        fake.app.state.chunk_delay = 0.0

    def dropped() -> list[dict[str, Any]]:
        return platform.request_log(key_id=key["id"], status=499)

    (record,) = kit.wait_until(dropped, "the usage record of the dropped stream", timeout=15)
    assert record["model"] == MODEL and record["endpoint"] == "/v1/chat/completions"
    # Dropped before the engine's usage: billed its prompt (estimated for Ollama) and the chunk it received.
    assert record["prompt_tokens"] > 0 and record["completion_tokens"] >= 1, record
    # The slot came back: the key's next request is admitted (a leaked slot would refuse it for good).
    response = kit.wait_until(
        lambda: (r := kit.chat(hub.url, key["key"], model=MODEL)).status_code != 429 and r,
        "the key's next request to be admitted",
        timeout=15,
    )
    assert response.status_code == 200, response.text
    kit.wait_until(lambda: platform.request_log(key_id=key["id"], status=200), "the admitted request's record", 15)
    assert len(platform.request_log(key_id=key["id"], status=429)) >= 1  # the one refused while it streamed


def test_a_request_abandoned_before_its_answer_cancels_the_upstream_call(hub, fake, platform, kit):
    """Non-streaming: the engine sees its request abandoned (it used to run to its end for nobody)."""
    tenant = platform.tenant("abandon-team")
    key = platform.key(tenant["id"], "abandoner", limits={"concurrency": 1})
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "a slow answer nobody waits for"}]})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key['key']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    ).encode()
    state = fake.app.state
    state.abandoned.clear()
    seen = len(state.calls)
    state.fail_mode, state.hang_seconds, state.fail_paths = "hang", 60, {"/api/chat"}  # answers in 60 s
    try:
        with socket.create_connection(("127.0.0.1", hub.port), timeout=30) as client:
            client.sendall(request)
            kit.wait_until(lambda: any(c.path == "/api/chat" for c in state.calls[seen:]), "the call to the engine")
        # The client has gone (its socket is closed); the gateway must drop the engine's call.
        kit.wait_until(lambda: state.abandoned == ["/api/chat"], "the engine to see its request abandoned", 15)
    finally:
        state.fail_mode, state.fail_paths = None, None

    (record,) = kit.wait_until(lambda: platform.request_log(key_id=key["id"], status=499), "the 499 record", 15)
    assert record["endpoint"] == "/v1/chat/completions" and record["model"] == MODEL
    assert record["prompt_tokens"] > 0, record  # the prompt reached the engine: billed as for a dropped stream
    assert record["completion_tokens"] == 0, record
    response = kit.chat(hub.url, key["key"], model=MODEL)  # the slot came back
    assert response.status_code == 200, response.text
