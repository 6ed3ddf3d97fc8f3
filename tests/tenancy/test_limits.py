"""Rate limits and budgets, counted in Redis and shared by two gateway processes on one PostgreSQL.

* rpm: 100 concurrent requests split over both processes give exactly ``rpm`` successes, the rest 429 with
  OpenAI's ``x-ratelimit-*`` headers and ``Retry-After``;
* tpm: counts the real tokens of each response (the remaining-tokens header drops by exactly that much);
* budgets: a tenant's daily token budget and monthly cost budget (at the configured price) stop it;
* concurrency: a second request while one is in flight is refused, whichever process it reaches;
* Redis unreachable: ``fail_open`` admits (``/health`` says so), ``fail_closed`` answers 503.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from support import InferhubProcess

REDIS_URL = "redis://127.0.0.1:6379/7"
MODEL = "llama3.1:8b"
PRICED = "priced:1b"
SLOW = "slow:1b"
PRICE_PER_MILLION = 100_000  # 0.1 per token, prompt and completion


def _redis_or_skip() -> None:
    try:
        import redis
    except ImportError:
        pytest.skip("redis-py is not installed")
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.skip(f"no Redis at {REDIS_URL} ({exc}): the shared-limit tests need a real Redis")
    client.flushdb()  # counters of an earlier run use the same key ids
    client.close()


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> Iterator[str]:
    _redis_or_skip()
    postgres = EmbeddedPostgres(Path(tmp_path_factory.mktemp("limits-pg")) / "pg")
    url = postgres.start()
    yield url
    postgres.stop()


@pytest.fixture(scope="module")
def fake(kit) -> Iterator[BackgroundServer]:
    server = kit.start_fake_ollama([MODEL, PRICED])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def slow() -> Iterator[BackgroundServer]:
    """A fake whose /api/chat waits (``hang``) before it answers, while ``app.state.fail_mode`` is set."""
    server = BackgroundServer(create_fake_ollama_app(models=[SLOW])).start()
    yield server
    server.stop()


def _config(kit, fake: BackgroundServer, slow: BackgroundServer) -> dict[str, Any]:
    return {
        "backends": kit.ollama_backends(fake.url, [MODEL, PRICED]) + kit.ollama_backends(slow.url, [SLOW]),
        "prices": {PRICED: {"prompt": PRICE_PER_MILLION, "completion": PRICE_PER_MILLION}},
    }


def _start(kit, home: Path, database_url: str, config: dict[str, Any], **env: str) -> InferhubProcess:
    return InferhubProcess(
        home,
        api_key=kit.PLATFORM_KEY,
        local_models=False,
        config=config,
        env=kit.fast_env(INFERHUB_DATABASE_URL=database_url, **env),
    ).start()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, kit, database_url, fake, slow) -> Iterator[list[InferhubProcess]]:
    """Two gateway processes sharing the database and Redis."""
    started: list[InferhubProcess] = []
    try:
        for name in ("a", "b"):
            home = tmp_path_factory.mktemp(f"limits-{name}")
            started.append(_start(kit, home, database_url, _config(kit, fake, slow), INFERHUB_REDIS_URL=REDIS_URL))
        yield started
    finally:
        for process in started:
            process.stop()


@pytest.fixture(scope="module")
def platform(pair, kit) -> Iterator[Any]:
    api = kit.Api(pair[0].url, pair[0].api_key)
    yield api
    api.close()


def _key(platform, pair, kit, tenant_id: int, name: str, **body: Any) -> dict[str, Any]:
    """A fresh key, known to both processes."""
    key = platform.key(tenant_id, name, wait=False, **body)
    for process in pair:
        kit.wait_key(process.url, key["key"])
    return key


def test_rpm_is_exact_across_two_processes(pair, platform, kit):
    tenant = platform.tenant("rpm-team")
    key = _key(platform, pair, kit, tenant["id"], "rpm-60", limits={"rpm": 60})
    kit.avoid_minute_boundary(12)
    start = threading.Barrier(100)

    def send(i: int) -> tuple[int, httpx.Response]:
        start.wait(timeout=30)
        return i % 2, kit.chat(pair[i % 2].url, key["key"], f"request {i}", timeout=60)

    with ThreadPoolExecutor(max_workers=100) as pool:
        results = list(pool.map(send, range(100)))
    statuses = Counter(r.status_code for _, r in results)
    assert statuses == {200: 60, 429: 40}, statuses
    ok = [r for _, r in results if r.status_code == 200]
    refused = [r for _, r in results if r.status_code == 429]
    assert {p for p, r in results if r.status_code == 200} == {0, 1}, "both processes served requests"
    # Redis INCR hands out each count once: the 60 successes saw remaining 59, 58, ..., 0.
    assert sorted(int(r.headers["x-ratelimit-remaining-requests"]) for r in ok) == list(range(60))
    for response in ok:
        assert response.headers["x-ratelimit-limit-requests"] == "60"
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
    for response in refused:
        error = kit.assert_openai_error(response, 429, "requests_per_minute_exceeded")
        assert error["type"] == "rate_limit_error" and "60 requests per minute" in error["message"]
        assert response.headers["x-ratelimit-limit-requests"] == "60"
        assert response.headers["x-ratelimit-remaining-requests"] == "0"
        assert response.headers["x-ratelimit-reset-requests"].endswith("s")
        assert 1 <= int(response.headers["retry-after"]) <= 60


def test_tpm_counts_the_real_tokens(pair, platform, kit):
    tenant = platform.tenant("tpm-team")
    limit = 40
    key = _key(platform, pair, kit, tenant["id"], "tpm-40", limits={"tpm": limit})
    kit.avoid_minute_boundary(8)
    texts = ["one", "two three four five", "six seven", "eight nine ten eleven twelve thirteen", "fourteen"]
    remaining: list[int] = []
    used = 0
    refused = None
    for i, text in enumerate(texts * 3):
        response = kit.chat(pair[i % 2].url, key["key"], text)  # alternate processes: the count is shared
        if response.status_code == 429:
            refused = response
            break
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit-tokens"] == str(limit)
        remaining.append(int(response.headers["x-ratelimit-remaining-tokens"]))
        assert remaining[-1] == limit - used  # what every earlier request used, exactly
        usage = response.json()["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
        used += usage["total_tokens"]
    assert refused is not None, f"never refused after {used} tokens"
    assert used >= limit and used - usage["total_tokens"] < limit  # refused right after crossing the limit
    error = kit.assert_openai_error(refused, 429, "tokens_per_minute_exceeded")
    assert f"{limit} tokens per minute" in error["message"]
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert refused.headers["x-ratelimit-limit-tokens"] == str(limit)
    assert int(refused.headers["retry-after"]) >= 1
    assert len(remaining) >= 3


def _budget_used(platform, tenant_id: int) -> dict[str, float]:
    return platform.ok("GET", f"/api/tenants/{tenant_id}")["budget_used"]


def test_daily_token_budget_stops_the_tenant(pair, platform, kit):
    tenant = platform.tenant("daily-tokens-team", limits={"daily_tokens": 15})
    first = _key(platform, pair, kit, tenant["id"], "budget-1")
    second = _key(platform, pair, kit, tenant["id"], "budget-2")
    used = 0
    for i in range(10):
        response = kit.chat(pair[i % 2].url, first["key"], "one two three")  # 3 prompt + 4 completion tokens
        if response.status_code != 200:
            break
        used += response.json()["usage"]["total_tokens"]
    error = kit.assert_openai_error(response, 429, "budget_exceeded")
    assert used >= 15 and used - 7 < 15
    assert "daily tokens budget" in error["message"] and "15" in error["message"]
    assert "daily-tokens-team" in error["message"]
    assert int(response.headers["retry-after"]) >= 1
    # The budget is the tenant's: its other key is refused too, on either process.
    for process in pair:
        kit.assert_openai_error(kit.chat(process.url, second["key"]), 429, "budget_exceeded")
    budget = _budget_used(platform, tenant["id"])
    assert budget["daily_tokens"] == used and budget["monthly_tokens"] == used
    assert budget["daily_cost"] == 0 and budget["monthly_cost"] == 0


def test_monthly_cost_budget_stops_the_tenant(pair, platform, kit):
    prices = {p["model"]: p for p in platform.ok("GET", "/api/prices")["data"]}
    assert Decimal(prices[PRICED]["prompt_per_million"]) == PRICE_PER_MILLION
    tenant = platform.tenant("monthly-cost-team", limits={"monthly_cost": 1.0})
    key = _key(platform, pair, kit, tenant["id"], "spender")
    cost = Decimal(0)
    for i in range(10):
        response = kit.chat(pair[i % 2].url, key["key"], "one two three", model=PRICED)
        if response.status_code != 200:
            break
        usage = response.json()["usage"]
        cost += Decimal(usage["total_tokens"]) * PRICE_PER_MILLION / 1_000_000
    error = kit.assert_openai_error(response, 429, "budget_exceeded")
    assert cost >= 1 and cost - Decimal("0.7") < 1
    assert "monthly cost budget" in error["message"] and "monthly-cost-team" in error["message"]
    # A model without a price costs nothing, but the budget is spent: the tenant is stopped for every model.
    kit.assert_openai_error(kit.chat(pair[1].url, key["key"], model=MODEL), 429, "budget_exceeded")
    budget = _budget_used(platform, tenant["id"])
    assert budget["monthly_cost"] == pytest.approx(float(cost)) and budget["daily_cost"] == pytest.approx(float(cost))
    recorded = kit.wait_until(
        lambda: (
            (rows := platform.usage(group_by="tenant", tenant_id=tenant["id"])) and rows[0]["requests"] >= 4 and rows
        ),
        "the usage records",
    )
    assert Decimal(recorded[0]["cost"]) == cost


def test_concurrency_limit_is_shared(pair, platform, slow, kit):
    tenant = platform.tenant("concurrency-team")
    key = _key(platform, pair, kit, tenant["id"], "one-at-a-time", limits={"concurrency": 1})
    state = slow.app.state
    state.fail_paths, state.hang_seconds, state.fail_mode = {"/api/chat"}, 3.0, "hang"
    calls_before = len(state.calls)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            first = pool.submit(kit.chat, pair[0].url, key["key"], model=SLOW)
            kit.wait_until(lambda: len(state.calls) > calls_before, "the first request to reach the slow upstream")
            for process in pair:  # in flight on process a: refused on a and on b
                response = kit.chat(process.url, key["key"], model=SLOW)
                error = kit.assert_openai_error(response, 429, "concurrency_exceeded")
                assert "1 requests in flight" in error["message"] or "in flight" in error["message"]
                assert response.headers["retry-after"] == "1"
            assert first.result(timeout=30).status_code == 200
    finally:
        state.fail_mode = None
    # The slot was given back (also by the refused requests): the next request goes through.
    assert kit.chat(pair[1].url, key["key"], model=SLOW).status_code == 200
    assert kit.chat(pair[0].url, key["key"], model=SLOW, stream=True).status_code == 200


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens once the socket is closed


@pytest.fixture(scope="module")
def no_redis(tmp_path_factory, kit, database_url, fake, slow, pair) -> Iterator[dict[str, InferhubProcess]]:
    """Two more processes whose Redis is unreachable: one fails open, one fails closed."""
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    started: dict[str, InferhubProcess] = {}
    try:
        for mode in ("fail_open", "fail_closed"):
            home = tmp_path_factory.mktemp(f"limits-{mode}")
            started[mode] = _start(
                kit,
                home,
                database_url,
                _config(kit, fake, slow),
                INFERHUB_REDIS_URL=url,
                INFERHUB_LIMITS_FAILURE_MODE=mode,
            )
        yield started
    finally:
        for process in started.values():
            process.stop()


def test_redis_down_fail_open_admits(no_redis, platform, kit):
    process = no_redis["fail_open"]
    tenant = platform.tenant("fail-open-team")
    key = platform.key(tenant["id"], "limited", wait=False, limits={"rpm": 2})
    kit.wait_key(process.url, key["key"])
    for _ in range(4):  # more than the rpm: nothing counts while Redis is away
        response = kit.chat(process.url, key["key"])
        assert response.status_code == 200, response.text
    health = process.health()
    assert health["components"]["redis"]["status"] == "unhealthy"
    assert health["components"]["redis"]["failure_mode"] == "fail_open"
    assert health["status"] == "degraded"
    assert "limiter_unavailable" in process.output()


def test_redis_down_fail_closed_refuses(no_redis, platform, kit):
    process = no_redis["fail_closed"]
    tenant = platform.tenant("fail-closed-team")
    limited = platform.key(tenant["id"], "limited", wait=False, limits={"rpm": 100})
    unlimited = platform.key(tenant["id"], "unlimited", wait=False)
    for key in (limited, unlimited):
        kit.wait_key(process.url, key["key"])
    error = kit.assert_openai_error(kit.chat(process.url, limited["key"]), 503, "limiter_unavailable")
    assert "fail_closed" in error["message"]
    kit.assert_openai_error(kit.chat(process.url, limited["key"], stream=True), 503, "limiter_unavailable")
    # A key (and tenant) without limits needs no counter, so it is served.
    assert kit.chat(process.url, unlimited["key"]).status_code == 200
    health = process.health()
    assert health["components"]["redis"]["status"] == "unhealthy"
    assert health["components"]["redis"]["failure_mode"] == "fail_closed"
