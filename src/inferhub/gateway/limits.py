"""Rate limits and budgets per key and per tenant, counted in Redis (all replicas) or in memory (one process).

Limits (all optional): ``rpm`` requests per minute, ``tpm`` tokens per minute
(prompt + completion, counted from real usage after each request), ``concurrency``
requests at once, ``daily_tokens``/``monthly_tokens`` and ``daily_cost``/``monthly_cost``
budgets. Windows are fixed (the current UTC minute, day, month), so a Redis
``INCR`` decides exactly across replicas: with rpm 60, the 61st request of the
minute is refused wherever it lands.

A request with no limits on its key or tenant costs nothing here. With Redis
unreachable, ``INFERHUB_LIMITS_FAILURE_MODE`` decides: ``fail_open`` admits (and
logs), ``fail_closed`` answers 503.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import structlog

from inferhub.errors import APIError

log = structlog.get_logger("inferhub.limits")

BUDGETS = {
    "daily_tokens": ("tokens", "day"),
    "monthly_tokens": ("tokens", "month"),
    "daily_cost": ("cost", "day"),
    "monthly_cost": ("cost", "month"),
}


class RateLimited(APIError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class LimiterUnavailable(APIError):
    status_code = 503
    error_type = "server_error"
    code = "limiter_unavailable"


@dataclass(slots=True)
class Scope:
    """One owner of limits: a key or a tenant."""

    kind: str  # "key" | "tenant"
    id: int
    limits: dict[str, Any]
    name: str = ""

    @property
    def label(self) -> str:
        """How error messages name the owner: ``API key ih-AbC…`` or ``tenant team-a``."""
        if self.kind == "key":
            return f"API key {self.name}…" if self.name else f"API key {self.id}"
        return f"tenant {self.name or self.id}"


@dataclass(slots=True)
class Admission:
    """What ``admit`` granted; ``settle`` it once the request is done."""

    scopes: list[Scope]
    concurrency_taken: list[Scope] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    degraded: bool = False


def _windows(now: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(now, UTC)
    return {"minute": str(int(now // 60)), "day": moment.strftime("%Y%m%d"), "month": moment.strftime("%Y%m")}


def _key(scope: Scope, name: str, window: str | None = None) -> str:
    return f"ih:lim:{scope.kind}:{scope.id}:{name}" + (f":{window}" if window else "")


class CounterStore(Protocol):
    async def incr(self, key: str, amount: float, ttl: int) -> float: ...
    async def get_many(self, keys: list[str]) -> list[float]: ...
    async def seed(self, key: str, value: float, ttl: int) -> None: ...
    async def ping(self) -> bool: ...


class MemoryCounters:
    """Counters in this process: exact for a single-process install."""

    def __init__(self) -> None:
        self._values: dict[str, tuple[float, float]] = {}

    def _live(self, key: str) -> float:
        entry = self._values.get(key)
        if entry is None:
            return 0.0
        value, expires = entry
        if expires < time.monotonic():
            del self._values[key]
            return 0.0
        return value

    async def incr(self, key: str, amount: float, ttl: int) -> float:
        value = self._live(key) + amount
        self._values[key] = (value, time.monotonic() + ttl)
        if len(self._values) > 100_000:
            self._sweep()
        return value

    async def get_many(self, keys: list[str]) -> list[float]:
        return [self._live(k) for k in keys]

    async def seed(self, key: str, value: float, ttl: int) -> None:
        if key not in self._values:
            self._values[key] = (value, time.monotonic() + ttl)

    async def ping(self) -> bool:
        return True

    def _sweep(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._values.items() if expires < now]:
            del self._values[key]


class RedisCounters:
    """Counters in Redis (redis-py asyncio): one round trip per operation, atomic across replicas."""

    def __init__(self, url: str) -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)

    async def incr(self, key: str, amount: float, ttl: int) -> float:
        pipe = self._redis.pipeline(transaction=True)
        if float(amount).is_integer():
            pipe.incrby(key, int(amount))
        else:
            pipe.incrbyfloat(key, amount)
        pipe.expire(key, ttl, nx=True)
        value, _ = await pipe.execute()
        return float(value)

    async def get_many(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        return [float(v) if v is not None else 0.0 for v in await self._redis.mget(keys)]

    async def seed(self, key: str, value: float, ttl: int) -> None:
        await self._redis.set(key, value, ex=ttl, nx=True)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def close(self) -> None:
        await self._redis.aclose()


class Limiter:
    def __init__(self, counters: CounterStore, *, fail_open: bool = True, metrics: Any = None) -> None:
        self.counters = counters
        self.fail_open = fail_open
        self.metrics = metrics
        self.healthy = True
        self.last_error: str | None = None

    async def admit(self, scopes: list[Scope]) -> Admission:
        admission = Admission(scopes=[s for s in scopes if s.limits])
        if not admission.scopes:
            return admission
        try:
            await self._admit(admission)
        except APIError:
            raise
        except Exception as exc:  # Redis down or timing out
            self._unavailable(exc)
            admission.degraded = True
            return admission
        self.healthy = True
        return admission

    async def _admit(self, admission: Admission) -> None:
        now = time.time()
        windows = _windows(now)
        reset_minute = 60 - now % 60
        # Read-only checks first (token rate, budgets), so a refused request consumes nothing.
        reads: list[tuple[Scope, str, float, str]] = []
        for scope in admission.scopes:
            if scope.limits.get("tpm") is not None:
                reads.append((scope, "tpm", scope.limits["tpm"], _key(scope, "tpm", windows["minute"])))
            for name, (unit, window) in BUDGETS.items():
                if scope.limits.get(name) is not None:
                    reads.append((scope, name, scope.limits[name], _key(scope, unit, windows[window])))
        values = await self.counters.get_many([r[3] for r in reads])
        for (scope, name, limit, _), used in zip(reads, values, strict=True):
            if name == "tpm":
                if scope.kind == "key" or "x-ratelimit-limit-tokens" not in admission.headers:
                    admission.headers.update(_token_headers(limit, used, reset_minute))
                if used >= limit:
                    self._refused("tpm", scope)
                    raise RateLimited(
                        f"{scope.label} is over its limit of {limit:g} tokens per minute",
                        code="tokens_per_minute_exceeded",
                        headers={"Retry-After": str(math.ceil(reset_minute)), **admission.headers},
                    )
            elif used >= limit:
                self._refused(name, scope, budget=True)
                period = "today" if name.startswith("daily") else "this month"
                unit = "tokens" if name.endswith("tokens") else "cost"
                raise RateLimited(
                    f"{scope.label} has used its {name.replace('_', ' ')} budget of {limit:g} {unit} "
                    f"{period} ({used:g} used)",
                    code="budget_exceeded",
                    headers={"Retry-After": str(_seconds_to_period_end(now, name))},
                )
        for scope in admission.scopes:
            rpm = scope.limits.get("rpm")
            if rpm is not None:
                count = await self.counters.incr(_key(scope, "rpm", windows["minute"]), 1, 120)
                headers = _request_headers(rpm, count, reset_minute)
                if scope.kind == "key" or "x-ratelimit-limit-requests" not in admission.headers:
                    admission.headers.update(headers)
                if count > rpm:
                    self._refused("rpm", scope)
                    raise RateLimited(
                        f"{scope.label} is over its limit of {rpm:g} requests per minute",
                        code="requests_per_minute_exceeded",
                        headers={"Retry-After": str(math.ceil(reset_minute)), **admission.headers, **headers},
                    )
        for scope in admission.scopes:
            concurrency = scope.limits.get("concurrency")
            if concurrency is not None:
                current = await self.counters.incr(_key(scope, "concurrent"), 1, 3600)
                admission.concurrency_taken.append(scope)
                if current > concurrency:
                    await self._release(admission)
                    self._refused("concurrency", scope)
                    raise RateLimited(
                        f"{scope.label} already has {concurrency:g} requests in flight (its limit)",
                        code="concurrency_exceeded",
                        headers={"Retry-After": "1", **admission.headers},
                    )

    async def settle(self, admission: Admission, tokens: int, cost: Decimal) -> None:
        """Count what the request used and give back its concurrency slot."""
        if not admission.scopes:
            return
        try:
            await self._release(admission)
            windows = _windows(time.time())
            for scope in admission.scopes:
                limits = scope.limits
                if tokens and limits.get("tpm") is not None:
                    await self.counters.incr(_key(scope, "tpm", windows["minute"]), tokens, 120)
                # Budget counters run for every limited owner, so a budget added later starts from real use.
                if tokens:
                    await self.counters.incr(_key(scope, "tokens", windows["day"]), tokens, 2 * 86400)
                    await self.counters.incr(_key(scope, "tokens", windows["month"]), tokens, 32 * 86400)
                if cost:
                    await self.counters.incr(_key(scope, "cost", windows["day"]), float(cost), 2 * 86400)
                    await self.counters.incr(_key(scope, "cost", windows["month"]), float(cost), 32 * 86400)
        except Exception as exc:
            self._unavailable(exc, during="settle")

    async def _release(self, admission: Admission) -> None:
        taken, admission.concurrency_taken = admission.concurrency_taken, []
        for scope in taken:
            await self.counters.incr(_key(scope, "concurrent"), -1, 3600)

    async def seed_budgets(self, totals_day: dict, totals_month: dict) -> None:
        """Start budget counters from the usage table, so a restart (or a Redis restart) does not reset them."""
        windows = _windows(time.time())
        for (kind, owner), (tokens, cost) in totals_day.items():
            scope = Scope(kind, owner, {})
            await self.counters.seed(_key(scope, "tokens", windows["day"]), tokens, 2 * 86400)
            await self.counters.seed(_key(scope, "cost", windows["day"]), float(cost), 2 * 86400)
        for (kind, owner), (tokens, cost) in totals_month.items():
            scope = Scope(kind, owner, {})
            await self.counters.seed(_key(scope, "tokens", windows["month"]), tokens, 32 * 86400)
            await self.counters.seed(_key(scope, "cost", windows["month"]), float(cost), 32 * 86400)

    async def used(self, scope: Scope) -> dict[str, float]:
        """Current budget use of a scope (for dashboards and the budget gauge)."""
        windows = _windows(time.time())
        keys = [_key(scope, unit, windows[window]) for unit, window in BUDGETS.values()]
        values = await self.counters.get_many(keys)
        return dict(zip(BUDGETS, values, strict=True))

    def _refused(self, limit: str, scope: Scope, budget: bool = False) -> None:
        log.info("request_limited", limit=limit, scope=scope.kind, scope_id=scope.id)
        if self.metrics is not None:
            counter = self.metrics.budget_refused if budget else self.metrics.rate_limited
            counter.labels(limit, scope.kind).inc()

    def _unavailable(self, exc: Exception, during: str = "admit") -> None:
        if self.healthy:
            log.error("limiter_unavailable", error=str(exc), mode="fail_open" if self.fail_open else "fail_closed",
                      during=during)  # fmt: skip
        self.healthy = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        if not self.fail_open and during == "admit":
            raise LimiterUnavailable(
                "the rate limiter (Redis) is unreachable and INFERHUB_LIMITS_FAILURE_MODE is fail_closed"
            ) from None


def _request_headers(limit: float, count: float, reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": f"{limit:g}",
        "x-ratelimit-remaining-requests": f"{max(0, limit - count):g}",
        "x-ratelimit-reset-requests": f"{math.ceil(reset)}s",
    }


def _token_headers(limit: float, used: float, reset: float) -> dict[str, str]:
    return {
        "x-ratelimit-limit-tokens": f"{limit:g}",
        "x-ratelimit-remaining-tokens": f"{max(0, limit - used):g}",
        "x-ratelimit-reset-tokens": f"{math.ceil(reset)}s",
    }


def _seconds_to_period_end(now: float, budget: str) -> int:
    moment = datetime.fromtimestamp(now, UTC)
    if budget.startswith("daily"):
        end = datetime(moment.year, moment.month, moment.day, tzinfo=UTC).timestamp() + 86400
    else:
        end = datetime(moment.year + (moment.month == 12), moment.month % 12 + 1, 1, tzinfo=UTC).timestamp()
    return max(1, math.ceil(end - now))
