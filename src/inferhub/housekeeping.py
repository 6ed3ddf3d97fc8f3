"""Background work of a running server: cache refresh, budget seeding, retention, gauges fed off the scrape path."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import structlog

from inferhub.gateway.limits import Limiter
from inferhub.gateway.usage_writer import UsageWriter
from inferhub.store.admin_service import AdminService
from inferhub.store.jobs import JobRepository
from inferhub.store.responses import ResponseRepository
from inferhub.tenancy.usage import day_start, month_bounds

log = structlog.get_logger("inferhub.server")


async def seed_budgets(limiter: Limiter, admin: AdminService) -> None:
    now = datetime.now(UTC)
    day = await asyncio.to_thread(admin.usage.totals_since, day_start(now))
    month = await asyncio.to_thread(admin.usage.totals_since, month_bounds(now.strftime("%Y-%m"))[0])
    try:
        await limiter.seed_budgets(day, month)
    except Exception as exc:  # Redis down at start: counters start empty, logged
        log.warning("budget_seed_failed", error=str(exc))


async def purge_usage(admin: AdminService, retention_days: int) -> None:
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=retention_days)
        try:
            removed = await asyncio.to_thread(admin.usage.purge_before, cutoff)
            if removed:
                log.info("usage_purged", removed=removed, before=cutoff.isoformat())
        except Exception as exc:
            log.warning("usage_purge_failed", error=str(exc))
        await asyncio.sleep(3600)


async def purge_responses(responses: ResponseRepository, retention_days: int, interval: float = 600.0) -> None:
    """Retention of stored Responses (``INFERHUB_RESPONSE_RETENTION_DAYS``, else the jobs' period), every 10 min."""
    while True:
        cutoff = datetime.now(UTC) - timedelta(days=retention_days)
        try:
            removed = await responses.purge(cutoff)
            if removed:
                log.info("responses_purged", removed=removed, before=cutoff.isoformat())
        except Exception as exc:
            log.warning("response_purge_failed", error=str(exc))
        await asyncio.sleep(interval)


def usage_gauges(writer: UsageWriter):
    from prometheus_client.core import GaugeMetricFamily

    pending = GaugeMetricFamily("llm_usage_writer_pending", "Usage records accepted but not yet written.")
    pending.add_metric([], writer.pending)
    oldest = GaugeMetricFamily("llm_usage_writer_oldest_pending_seconds", "Age of the oldest unwritten usage record.")
    oldest.add_metric([], writer.oldest_pending_seconds)
    return [pending, oldest]


async def count_jobs(jobs: JobRepository, into: dict[str, int]) -> None:
    """Jobs by state for ``llm_jobs``, refreshed off the scrape path (the scrape only reads this dict)."""
    while True:
        try:
            counts = await asyncio.to_thread(jobs.counts)
            into.clear()
            into.update(counts)
        except Exception as exc:
            log.debug("job_count_failed", error=str(exc))
        await asyncio.sleep(5)


def job_gauge(counts: dict[str, int]):
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily("llm_jobs", "Jobs by state (all replicas; refreshed every 5 s).", labels=["state"])
    for state in ("queued", "running", "succeeded", "failed", "cancelled"):
        gauge.add_metric([state], counts.get(state, 0))
    return gauge


async def refresh_periodically(reload, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await reload("*")
        except Exception as exc:
            log.warning("cache_refresh_failed", error=str(exc))


async def track_budgets(tenants, limiter: Limiter, into: dict[tuple[str, str], float], interval: float = 15.0) -> None:
    """Share of each tenant budget used, for ``llm_budget_used_ratio`` (computed here, read at scrape)."""
    from inferhub.gateway.limits import BUDGETS, Scope

    while True:
        try:
            fresh: dict[tuple[str, str], float] = {}
            for tenant in tenants.all():
                budgets = {name: limit for name, limit in tenant.limits.items() if name in BUDGETS and limit}
                if not budgets:
                    continue
                used = await limiter.used(Scope("tenant", tenant.id, tenant.limits, tenant.name))
                for name, limit in budgets.items():
                    fresh[(tenant.name, name)] = used[name] / limit
            into.clear()
            into.update(fresh)
        except Exception as exc:
            log.debug("budget_tracking_failed", error=str(exc))
        await asyncio.sleep(interval)


def budget_gauge(ratios: dict[tuple[str, str], float]):
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily("llm_budget_used_ratio", "Share of a tenant budget used in its current period (0..1+).",
                              labels=["tenant", "budget"])  # fmt: skip
    for (tenant, budget), ratio in sorted(ratios.items()):
        gauge.add_metric([tenant, budget], ratio)
    return gauge
