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


_window_cache: tuple[int, dict[str, str]] = (-1, {})


def _windows(now: float) -> dict[str, str]:
    """The current minute, day and month as counter-key suffixes; formatted once per second, not per request."""
    global _window_cache
    second = int(now)
    if _window_cache[0] != second:
        moment = datetime.fromtimestamp(second, UTC)
        windows = {"minute": str(second // 60), "day": moment.strftime("%Y%m%d"), "month": moment.strftime("%Y%m")}
        _window_cache = (second, windows)
    return _window_cache[1]


def _key(scope: Scope, name: str, window: str | None = None) -> str:
    return f"ih:lim:{scope.kind}:{scope.id}:{name}" + (f":{window}" if window else "")


RPM_TTL, CONCURRENCY_TTL = 120, 3600


@dataclass(slots=True)
class AdmitPlan:
    """Everything one admission checks, so a store can decide it in one round trip.

    In order: ``reads`` (key, limit) refuse when the stored value is at or over the limit and consume
    nothing; ``rpm`` (key, limit) are incremented one by one, and the first over its limit refuses
    (keeping its own increment, as an attempt); ``concurrency`` (key, limit) are incremented, and if one
    is over its limit all of them are given back.
    """

    reads: list[tuple[str, float]] = field(default_factory=list)
    rpm: list[tuple[str, float]] = field(default_factory=list)
    concurrency: list[tuple[str, float]] = field(default_factory=list)


@dataclass(slots=True)
class AdmitOutcome:
    reads: list[float]
    rpm: list[float]  # counts after increment, up to and including a refusing one
    concurrency: list[float]
    refused: tuple[str, int] | None  # ("reads" | "rpm" | "concurrency", index in that list)


class CounterStore(Protocol):
    async def admit(self, plan: AdmitPlan) -> AdmitOutcome: ...
    async def incr_many(self, increments: list[tuple[str, float, int]]) -> None: ...
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

    async def admit(self, plan: AdmitPlan) -> AdmitOutcome:
        reads = [self._live(key) for key, _ in plan.reads]
        outcome = AdmitOutcome(reads=reads, rpm=[], concurrency=[], refused=None)
        for index, (value, (_, limit)) in enumerate(zip(reads, plan.reads, strict=True)):
            if value >= limit:
                outcome.refused = ("reads", index)
                return outcome
        for index, (key, limit) in enumerate(plan.rpm):
            outcome.rpm.append(await self.incr(key, 1, RPM_TTL))
            if outcome.rpm[-1] > limit:
                outcome.refused = ("rpm", index)
                return outcome
        for key, _ in plan.concurrency:
            outcome.concurrency.append(await self.incr(key, 1, CONCURRENCY_TTL))
        for index, (value, (_, limit)) in enumerate(zip(outcome.concurrency, plan.concurrency, strict=True)):
            if value > limit:
                for key, _ in plan.concurrency:
                    await self.incr(key, -1, CONCURRENCY_TTL)
                outcome.refused = ("concurrency", index)
                return outcome
        return outcome

    async def incr_many(self, increments: list[tuple[str, float, int]]) -> None:
        for key, amount, ttl in increments:
            await self.incr(key, amount, ttl)

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


# One admission in one round trip, atomic across replicas: the same steps as MemoryCounters.admit.
# KEYS: reads, then rpm keys, then concurrency keys. ARGV: the three counts, then their limits in that order.
# Values go back as strings: Redis would truncate a Lua number (a cost) to an integer.
_ADMIT_SCRIPT = """
local nr, np, nc = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local reads, rpm, conc = {}, {}, {}
for i = 1, nr do
  reads[i] = redis.call('GET', KEYS[i]) or '0'
  if tonumber(reads[i]) >= tonumber(ARGV[3 + i]) then return {'reads', i - 1, reads, rpm, conc} end
end
for i = 1, np do
  local key = KEYS[nr + i]
  local count = redis.call('INCR', key)
  redis.call('EXPIRE', key, RPM_TTL, 'NX')
  rpm[i] = tostring(count)
  if count > tonumber(ARGV[3 + nr + i]) then return {'rpm', i - 1, reads, rpm, conc} end
end
for i = 1, nc do
  local key = KEYS[nr + np + i]
  conc[i] = tostring(redis.call('INCR', key))
  redis.call('EXPIRE', key, CONCURRENCY_TTL, 'NX')
end
for i = 1, nc do
  if tonumber(conc[i]) > tonumber(ARGV[3 + nr + np + i]) then
    for j = 1, nc do redis.call('DECR', KEYS[nr + np + j]) end
    return {'concurrency', i - 1, reads, rpm, conc}
  end
end
return {'', -1, reads, rpm, conc}
""".replace("CONCURRENCY_TTL", str(CONCURRENCY_TTL)).replace("RPM_TTL", str(RPM_TTL))


class RedisCounters:
    """Counters in Redis (redis-py asyncio), atomic across replicas.

    An admission is one Lua script call and a settlement one pipeline: two round trips per request
    whatever limits are set (it was one per counter, up to 15).
    """

    def __init__(self, url: str, namespace: str = "") -> None:
        import redis.asyncio as redis

        self._redis = redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self._admit = self._redis.register_script(_ADMIT_SCRIPT)
        # ``ih:lim:key:7:rpm:…`` becomes ``ih:<installation id>:lim:key:7:rpm:…``: key and tenant ids are
        # the database's, so counters are the installation's (see store/installation.py).
        self._prefix = f"ih:{namespace}:" if namespace else "ih:"

    def _name(self, key: str) -> str:
        return self._prefix + key.removeprefix("ih:")

    async def admit(self, plan: AdmitPlan) -> AdmitOutcome:
        keys = [self._name(key) for key, _ in (*plan.reads, *plan.rpm, *plan.concurrency)]
        limits = [limit for _, limit in (*plan.reads, *plan.rpm, *plan.concurrency)]
        args = [len(plan.reads), len(plan.rpm), len(plan.concurrency), *limits]
        refused, index, reads, rpm, concurrency = await self._admit(keys=keys, args=args)
        return AdmitOutcome(
            reads=[float(v) for v in reads],
            rpm=[float(v) for v in rpm],
            concurrency=[float(v) for v in concurrency],
            refused=(refused.decode(), int(index)) if refused else None,
        )

    async def incr_many(self, increments: list[tuple[str, float, int]]) -> None:
        if not increments:
            return
        pipe = self._redis.pipeline(transaction=False)
        for name, amount, ttl in increments:
            key = self._name(name)
            if float(amount).is_integer():
                pipe.incrby(key, int(amount))
            else:
                pipe.incrbyfloat(key, amount)
            pipe.expire(key, ttl, nx=True)
        await pipe.execute()

    async def get_many(self, keys: list[str]) -> list[float]:
        if not keys:
            return []
        return [float(v) if v is not None else 0.0 for v in await self._redis.mget([self._name(k) for k in keys])]

    async def seed(self, key: str, value: float, ttl: int) -> None:
        await self._redis.set(self._name(key), value, ex=ttl, nx=True)

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
        reads: list[tuple[Scope, str, float]] = []
        plan = AdmitPlan()
        for scope in admission.scopes:
            if scope.limits.get("tpm") is not None:
                reads.append((scope, "tpm", scope.limits["tpm"]))
                plan.reads.append((_key(scope, "tpm", windows["minute"]), scope.limits["tpm"]))
            for name, (unit, window) in BUDGETS.items():
                if scope.limits.get(name) is not None:
                    reads.append((scope, name, scope.limits[name]))
                    plan.reads.append((_key(scope, unit, windows[window]), scope.limits[name]))
        rpm_scopes = [scope for scope in admission.scopes if scope.limits.get("rpm") is not None]
        plan.rpm = [(_key(scope, "rpm", windows["minute"]), scope.limits["rpm"]) for scope in rpm_scopes]
        concurrency_scopes = [scope for scope in admission.scopes if scope.limits.get("concurrency") is not None]
        plan.concurrency = [(_key(scope, "concurrent"), scope.limits["concurrency"]) for scope in concurrency_scopes]
        if not (plan.reads or plan.rpm or plan.concurrency):
            return
        outcome = await self.counters.admit(plan)

        for (scope, name, limit), used in zip(reads, outcome.reads, strict=False):
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
        for scope, count in zip(rpm_scopes, outcome.rpm, strict=False):
            rpm = scope.limits["rpm"]
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
        if outcome.refused is not None and outcome.refused[0] == "concurrency":
            scope = concurrency_scopes[outcome.refused[1]]  # the store gave every slot back already
            self._refused("concurrency", scope)
            raise RateLimited(
                f"{scope.label} already has {scope.limits['concurrency']:g} requests in flight (its limit)",
                code="concurrency_exceeded",
                headers={"Retry-After": "1", **admission.headers},
            )
        admission.concurrency_taken = concurrency_scopes

    async def settle(self, admission: Admission, tokens: int, cost: Decimal) -> None:
        """Count what the request used and give back its concurrency slot, in one batch."""
        if not admission.scopes:
            return
        increments = self._release_increments(admission)
        windows = _windows(time.time())
        for scope in admission.scopes:
            if tokens and scope.limits.get("tpm") is not None:
                increments.append((_key(scope, "tpm", windows["minute"]), tokens, RPM_TTL))
            # Budget counters run for every limited owner, so a budget added later starts from real use.
            if tokens:
                increments.append((_key(scope, "tokens", windows["day"]), tokens, 2 * 86400))
                increments.append((_key(scope, "tokens", windows["month"]), tokens, 32 * 86400))
            if cost:
                increments.append((_key(scope, "cost", windows["day"]), float(cost), 2 * 86400))
                increments.append((_key(scope, "cost", windows["month"]), float(cost), 32 * 86400))
        try:
            await self.counters.incr_many(increments)
        except Exception as exc:
            self._unavailable(exc, during="settle")

    def _release_increments(self, admission: Admission) -> list[tuple[str, float, int]]:
        taken, admission.concurrency_taken = admission.concurrency_taken, []
        return [(_key(scope, "concurrent"), -1, CONCURRENCY_TTL) for scope in taken]

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
