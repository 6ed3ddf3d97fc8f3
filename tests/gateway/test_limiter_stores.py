"""The limiter's decisions, the same with in-process counters and with Redis (one Lua script per admission).

Redis is the machine's own (127.0.0.1:6379, started by scripts/ensure-services.sh), database 15.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Coroutine, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from inferhub.gateway.limits import Limiter, MemoryCounters, RateLimited, RedisCounters, Scope, _key, _windows

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/15"


def _redis_reachable() -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> Iterator[Limiter]:
    if request.param == "redis":
        if not _redis_reachable():
            pytest.skip("Redis is not reachable on 127.0.0.1:6379 (scripts/ensure-services.sh starts it)")
        yield Limiter(RedisCounters(REDIS_URL), fail_open=False)
    else:
        yield Limiter(MemoryCounters(), fail_open=False)


def _scope(kind: str, **limits: float) -> Scope:
    return Scope(kind, random.randrange(10**9), limits, name=f"{kind}-test")


def run(limiter: Limiter, scenario: Coroutine[Any, Any, T]) -> T:
    """One event loop per test: the Redis client's connections belong to the loop that opened them."""

    async def main() -> T:
        try:
            return await scenario
        finally:
            if isinstance(limiter.counters, RedisCounters):
                await limiter.counters.close()

    return asyncio.run(main())


def _rpm_key(scope: Scope) -> str:
    return _key(scope, "rpm", _windows(time.time())["minute"])


def test_rpm_refuses_the_request_over_the_limit_with_openai_headers(limiter: Limiter) -> None:
    key = _scope("key", rpm=3)

    async def scenario() -> tuple[list[str], RateLimited]:
        remaining = []
        for _ in range(3):
            admission = await limiter.admit([key])
            remaining.append(admission.headers["x-ratelimit-remaining-requests"])
            await limiter.settle(admission, 0, Decimal(0))
        with pytest.raises(RateLimited) as refused:
            await limiter.admit([key])
        return remaining, refused.value

    remaining, refused = run(limiter, scenario())
    assert remaining == ["2", "1", "0"]
    assert refused.code == "requests_per_minute_exceeded"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert int(refused.headers["Retry-After"]) >= 1


def test_a_refused_concurrency_slot_gives_back_every_slot_taken(limiter: Limiter) -> None:
    key, tenant = _scope("key", concurrency=5), _scope("tenant", concurrency=1)

    async def scenario() -> list[float]:
        first = await limiter.admit([key, tenant])
        with pytest.raises(RateLimited) as refused:
            await limiter.admit([key, tenant])
        assert refused.value.code == "concurrency_exceeded"
        assert "tenant tenant-test" in refused.value.message
        in_flight = await limiter.counters.get_many([_key(key, "concurrent"), _key(tenant, "concurrent")])
        await limiter.settle(first, 0, Decimal(0))
        again = await limiter.admit([key, tenant])  # the tenant's slot is free again
        await limiter.settle(again, 0, Decimal(0))
        return in_flight + await limiter.counters.get_many([_key(key, "concurrent"), _key(tenant, "concurrent")])

    assert run(limiter, scenario()) == [1.0, 1.0, 0.0, 0.0]


def test_a_spent_budget_refuses_and_the_refusal_consumes_no_request(limiter: Limiter) -> None:
    key = _scope("key", rpm=100, daily_tokens=100)

    async def scenario() -> tuple[RateLimited, dict[str, float], list[float]]:
        admission = await limiter.admit([key])
        await limiter.settle(admission, 100, Decimal("0.25"))
        with pytest.raises(RateLimited) as refused:
            await limiter.admit([key])
        rpm_key = next(k for k in (await _rpm_keys(key)))
        return refused.value, await limiter.used(key), await limiter.counters.get_many([rpm_key])

    async def _rpm_keys(scope: Scope) -> list[str]:
        import time

        from inferhub.gateway.limits import _windows

        return [_key(scope, "rpm", _windows(time.time())["minute"])]

    refused, used, rpm_count = run(limiter, scenario())
    assert refused.code == "budget_exceeded"
    assert "daily tokens budget of 100" in refused.message
    assert used["daily_tokens"] == 100 and used["daily_cost"] == pytest.approx(0.25)
    assert rpm_count == [1.0]  # only the admitted request counted


def test_tokens_per_minute_counts_settled_usage(limiter: Limiter) -> None:
    key = _scope("key", tpm=50)

    async def scenario() -> tuple[str, RateLimited]:
        admission = await limiter.admit([key])
        await limiter.settle(admission, 30, Decimal(0))
        second = await limiter.admit([key])
        remaining = second.headers["x-ratelimit-remaining-tokens"]
        await limiter.settle(second, 30, Decimal(0))
        with pytest.raises(RateLimited) as refused:
            await limiter.admit([key])
        return remaining, refused.value

    remaining, refused = run(limiter, scenario())
    assert remaining == "20"
    assert refused.code == "tokens_per_minute_exceeded"
