"""The wiring: build every service of a running Inferhub in order, and tear them down in reverse.

``build_services`` is an async context manager on one ``AsyncExitStack``: each component is made by a small
function below, in dependency order, and registers its own cleanup as it is made. A start-up that fails
half-way (database unreachable, bad secret key, a model that does not load) so unwinds exactly what had
started, and leaves no task running. ``create_served_app`` is the HTTP app whose lifespan runs it, so a test
starts the real server in-process with ``TestClient(create_served_app(settings))``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import structlog
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from inferhub import __version__
from inferhub.api.context import AppContext
from inferhub.app import create_app
from inferhub.backends.base import Backend
from inferhub.backends.embedded_adapter import EmbeddedAdapter
from inferhub.backends.llama_cpp_tokens import ChatPromptCounter
from inferhub.backends.openai_adapter import OpenAIAdapter
from inferhub.bootstrap import (
    ensure_bootstrap_admin,
    ensure_bootstrap_key,
    print_bootstrap_key,
    print_bootstrap_password,
)
from inferhub.gateway.auth import AdminUserCache, KeyCache
from inferhub.gateway.health_monitor import HealthMonitor
from inferhub.gateway.limits import Limiter, MemoryCounters, RedisCounters
from inferhub.gateway.metering import Meter, PriceCache, TenantCache
from inferhub.gateway.pipeline import Gateway
from inferhub.gateway.registry import BackendRegistry, RoutingDefaults
from inferhub.gateway.retry_budget import RetryBudget
from inferhub.gateway.service import InferenceService
from inferhub.gateway.stats import StatsRecorder
from inferhub.gateway.usage_writer import UsageWriter
from inferhub.health_checks import chat_model_check, database_check, embedding_model_check, redis_check
from inferhub.home import check_home, open_database
from inferhub.housekeeping import (
    budget_gauge,
    count_jobs,
    job_gauge,
    purge_responses,
    purge_usage,
    refresh_periodically,
    seed_budgets,
    track_budgets,
    usage_gauges,
)
from inferhub.jobs.worker import JobWorker
from inferhub.observability.metrics import Metrics, StateCollector
from inferhub.observability.tracing import Tracing
from inferhub.rag.service import RagService
from inferhub.runtime.embedded_postgres import EmbeddedPostgres, StartupError
from inferhub.runtime.local_chat_model import packaged_model_path
from inferhub.settings import Settings
from inferhub.store import migrate
from inferhub.store.admin_service import AdminService
from inferhub.store.backends import BackendRepository
from inferhub.store.batches import BatchRepository, FileRepository
from inferhub.store.config_service import ConfigService
from inferhub.store.database import Database
from inferhub.store.installation import installation_id
from inferhub.store.jobs import JobRepository
from inferhub.store.keys import KeyRepository
from inferhub.store.notify import ChangeListener
from inferhub.store.rag import RagStore
from inferhub.store.responses import ResponseRepository
from inferhub.store.secrets import SecretBox, SecretError, load_master_keys

if TYPE_CHECKING:  # imported lazily at run time: torch and llama.cpp are slow to import
    from inferhub.runtime.attached_chat_model import AttachedChatModel
    from inferhub.runtime.local_chat_model import LocalChatModel
    from inferhub.runtime.local_embedding_model import LocalEmbeddingModel

log = structlog.get_logger("inferhub.server")

Reload = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class Observability:
    """Metrics and tracing: made before the services, because the app's middlewares hold them."""

    metrics: Metrics
    tracing: Tracing | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Observability:
        tracing = Tracing.otlp(settings.otlp_endpoint, settings.service_name) if settings.otlp_endpoint else None
        return cls(Metrics(tenant_label=settings.metrics_tenant_label), tracing)


@dataclass(frozen=True)
class LocalModels:
    """The embedded models this process runs (``INFERHUB_LOCAL_MODELS``), or ``None`` each."""

    chat: LocalChatModel | AttachedChatModel | None = None
    embedding: LocalEmbeddingModel | None = None


@dataclass(frozen=True)
class Stores:
    """The repositories over the one database pool."""

    db: Database
    box: SecretBox  # backend credentials, admin session and webhook signing
    keys: KeyRepository
    backends: BackendRepository
    config: ConfigService
    admin: AdminService


@dataclass(frozen=True)
class Caches:
    """What the hot path reads instead of the database, kept fresh by ``LISTEN`` and a periodic reload."""

    keys: KeyCache = field(default_factory=KeyCache)
    admin_users: AdminUserCache = field(default_factory=AdminUserCache)
    tenants: TenantCache = field(default_factory=TenantCache)
    prices: PriceCache = field(default_factory=PriceCache)


@dataclass
class Services:
    """Everything ``build_services`` made; ``context`` is what the HTTP layer gets."""

    settings: Settings
    context: AppContext
    observability: Observability
    database_url: str
    embedded_database: bool
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)  # the background loops, by name

    @property
    def metrics(self) -> Metrics:
        return self.observability.metrics


@asynccontextmanager
async def build_services(
    settings: Settings, observability: Observability | None = None, *, api: bool = True
) -> AsyncIterator[Services]:
    """Start the services in order and stop them in reverse; ``api=False`` is ``inferhub worker``'s set.

    ``observability`` defaults to one built from the settings (whose tracing is then shut down here); a
    caller that passes its own keeps it.
    """
    async with AsyncExitStack() as stack:
        if observability is None:
            observability = _observability(stack, settings)
        services = await _build(stack, settings, observability, api=api)
        yield services
        log.info("inferhub_stopping")
    log.info("inferhub_stopped")


def create_served_app(settings: Settings, observability: Observability | None = None) -> FastAPI:
    """The HTTP API whose lifespan builds the services (``app.state.services``) and tears them down."""
    observability = observability or Observability.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(settings, observability, api=True) as services:
            app.state.services = services
            app.state.context = services.context
            try:
                yield
            finally:
                del app.state.services
                app.state.context = None
        if observability.tracing is not None:
            observability.tracing.shutdown()

    return create_app(
        None,
        max_body_bytes=settings.max_body_bytes,
        metrics=observability.metrics,
        tracing=observability.tracing,
        lifespan=lifespan,
    )


async def _build(stack: AsyncExitStack, settings: Settings, observability: Observability, *, api: bool) -> Services:
    """Each step needs only what the steps above made, and puts its own cleanup on ``stack``."""
    home = check_home(settings.home)
    models = _local_models(settings, home)
    database_url, embedded = await _start_slow_parts(stack, settings, models)
    stores = _stores(stack, database_url, _secret_box(settings, home))
    await _apply_config(settings, stores, api=api)
    registry = _registry(stack, settings, stores)
    caches = Caches()
    stores.admin.report_changes(keys=caches.keys.put, users=caches.admin_users.apply)  # this replica sees its writes
    await _add_local_backends(registry, models, settings)
    reload = _reloader(caches, stores, registry)
    listener_task = await _listen_for_changes(stack, database_url, reload)
    await reload("*")

    metrics = observability.metrics
    stats = StatsRecorder(stores.backends.add_stats)
    gateway = build_gateway(settings, registry, stats, observability)
    limiter = await _limiter(stack, settings, stores, metrics)
    usage_writer = UsageWriter(stores.admin.usage.insert_many)
    meter = build_meter(limiter, caches, metrics)
    service = InferenceService(gateway, meter, usage_writer)  # the one pipeline: routes, RAG, jobs, playground
    context = _app_context(settings, stores, caches, gateway, registry, service, models, metrics)
    _add_health_checks(context, stores.db, models, limiter)

    services = Services(settings, context, observability, database_url, embedded_database=embedded)
    services.tasks["change-listener"] = listener_task
    _start_background(stack, services, stores, caches, limiter, usage_writer, stats, reload)
    return services


# -- the components, in the order they start --------------------------------------------------------------


def _observability(stack: AsyncExitStack, settings: Settings) -> Observability:
    observability = Observability.from_settings(settings)
    if observability.tracing is not None:
        stack.callback(observability.tracing.shutdown)
    return observability


def _local_models(settings: Settings, home: Path) -> LocalModels:
    """The embedded models to run: attached to a llama.cpp the supervisor started, or our own child."""
    if not settings.local_models:
        return LocalModels()
    from inferhub.runtime.local_embedding_model import LocalEmbeddingModel

    embedding = LocalEmbeddingModel(settings.local_embedding_model)
    if settings.local_chat_url:
        from inferhub.runtime.attached_chat_model import AttachedChatModel

        return LocalModels(AttachedChatModel(settings.local_chat_model, settings.local_chat_url), embedding)
    from inferhub.runtime.local_chat_model import LocalChatModel

    chat = LocalChatModel(
        alias=settings.local_chat_model,
        model_path=settings.local_chat_model_path,
        context=settings.local_chat_context,
        threads=settings.local_chat_threads,
        restart_delay=settings.local_chat_restart_delay_seconds,
        log_path=home / "logs" / "llama-server.log",
        pid_file=home / "run" / "llama-server.pid",
    )
    return LocalModels(chat, embedding)


async def _start_slow_parts(stack: AsyncExitStack, settings: Settings, models: LocalModels) -> tuple[str, bool]:
    """PostgreSQL, the llama.cpp child and the torch import, side by side; the URL and whether it is embedded."""
    embedded: list[EmbeddedPostgres] = []
    stack.callback(lambda: [pg.stop() for pg in embedded])
    tasks: list[asyncio.Future[object]] = [
        asyncio.ensure_future(asyncio.to_thread(_start_database, settings, embedded))
    ]
    if models.chat is not None:
        stack.push_async_callback(models.chat.stop)
        tasks.append(asyncio.ensure_future(models.chat.start()))
    if models.embedding is not None:
        stack.callback(models.embedding.close)
        tasks.append(asyncio.ensure_future(asyncio.to_thread(models.embedding.load)))
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    url = tasks[0].result()
    assert isinstance(url, str)
    return url, bool(embedded)


def _start_database(settings: Settings, embedded: list[EmbeddedPostgres]) -> str:
    """Open (or start) the database and migrate it; an unreachable one is a ``StartupError`` saying so."""
    url, server = open_database(settings)
    if server is not None:
        embedded.append(server)
    try:
        if not settings.worker_child:  # the supervisor migrated already
            migrate.upgrade(url)
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise StartupError(f"cannot use the database of INFERHUB_DATABASE_URL: {reason}") from None
    return url


def _secret_box(settings: Settings, home: Path) -> SecretBox:
    try:
        return SecretBox(load_master_keys(settings.secret_key, settings.secret_key_file, home))
    except SecretError as exc:
        raise StartupError(str(exc)) from None


def _stores(stack: AsyncExitStack, database_url: str, box: SecretBox) -> Stores:
    db = Database(database_url)
    stack.callback(db.dispose)
    return Stores(
        db, box, KeyRepository(db), BackendRepository(db, box), ConfigService(db, box), AdminService.for_database(db)
    )


async def _apply_config(settings: Settings, stores: Stores, *, api: bool) -> None:
    """Backends, routes and prices of the configuration into the database; the bootstrap key and admin."""
    if not settings.worker_child:  # done once, by the supervisor or the single process
        await asyncio.to_thread(stores.backends.sync_from_config, settings.backends)
        await asyncio.to_thread(stores.config.routes.sync_from_config, settings.models, settings.aliases)
    new_key = await asyncio.to_thread(ensure_bootstrap_key, stores.keys, settings)
    if new_key:
        print_bootstrap_key(new_key)
    if not settings.worker_child and api:  # the API's (the supervisor's with --workers N)
        new_password = await asyncio.to_thread(ensure_bootstrap_admin, stores.admin, settings)
        if new_password:
            print_bootstrap_password(new_password, settings)
    usage = stores.admin.usage
    for model, price in settings.prices.items():
        await asyncio.to_thread(lambda m=model, p=price: usage.set_price(
            m, Decimal(str(p.prompt)), Decimal(str(p.completion)), actor="config", source="config"))  # fmt: skip


def _registry(stack: AsyncExitStack, settings: Settings, stores: Stores) -> BackendRegistry:
    registry = BackendRegistry(
        RoutingDefaults(
            strategy=settings.default_strategy,
            max_concurrency=settings.default_max_concurrency,
            failure_threshold=settings.circuit_failure_threshold,
            cooldown_seconds=settings.circuit_cooldown_seconds,
        ),
        decrypt=stores.box.decrypt,
    )
    stack.push_async_callback(registry.close)
    return registry


async def _add_local_backends(registry: BackendRegistry, models: LocalModels, settings: Settings) -> None:
    chat, embedding = models.chat, models.embedding
    if chat is not None:
        local = Backend(
            id=f"local:{chat.alias}", model_name=chat.alias, backend_type="llamacpp",
            endpoint_url=chat.url, source="local", description="embedded llama.cpp (SmolLM2-135M)",
            timeout_seconds=300.0, max_concurrency=2,  # llama-cpp-python generates one request at a time
            capabilities=frozenset({"chat", "completions"}),  # started without embedding=True
            context_tokens=settings.local_chat_context,
        )  # fmt: skip
        adapter = OpenAIAdapter(local, registry.client_for(local.endpoint_url, 300.0))
        model_file = getattr(chat, "model_path", None) or settings.local_chat_model_path
        counter = ChatPromptCounter(model_file or packaged_model_path())  # streams bill the engine's count
        await asyncio.to_thread(counter.load)
        adapter.prompt_counter = counter.count
        registry.add_local(local, adapter)
    if embedding is not None:
        local = Backend(
            id=f"local:{embedding.name}", model_name=embedding.name, backend_type="embedded",
            endpoint_url="embedded://" + embedding.name, source="local",
            description="embedded sentence-transformers (all-MiniLM-L6-v2, 384 dimensions)",
            capabilities=frozenset({"embeddings"}),
        )  # fmt: skip
        registry.add_local(local, EmbeddedAdapter(local, embedding))


def _reloader(caches: Caches, stores: Stores, registry: BackendRegistry) -> Reload:
    """Reload one kind of cache (``keys``, ``tenants``, …, or ``*``) from the database."""

    async def reload(kind: str) -> None:
        if kind in ("keys", "*"):
            since = caches.keys.generation  # writes made here while the rows are read are kept on top
            caches.keys.replace(await asyncio.to_thread(stores.keys.list), loaded_since=since)
        if kind in ("admin_users", "*"):
            since = caches.admin_users.generation
            caches.admin_users.replace(await asyncio.to_thread(stores.admin.users.list), loaded_since=since)
        if kind in ("tenants", "*"):
            caches.tenants.replace(await asyncio.to_thread(stores.admin.tenants.list))
        if kind in ("prices", "*"):
            caches.prices.replace(await asyncio.to_thread(stores.admin.usage.prices))
        if kind in ("backends", "*"):
            registry.replace_stored(await asyncio.to_thread(stores.backends.list))
            routes = await asyncio.to_thread(stores.config.routes.list_routes)
            registry.replace_routes(routes, await asyncio.to_thread(stores.config.routes.list_aliases))
        log.debug("cache_reloaded", kind=kind)

    return reload


async def _listen_for_changes(stack: AsyncExitStack, database_url: str, reload: Reload) -> asyncio.Task[None]:
    """Listen first, then load: a change committed between the two would otherwise wait for the periodic
    refresh (INFERHUB_CACHE_REFRESH_SECONDS) on this replica."""
    listener = ChangeListener(database_url, reload)
    task = asyncio.create_task(listener.run(), name="change-listener")
    stack.push_async_callback(_cancel, task)
    await asyncio.wait_for(listener.connected.wait(), timeout=30)
    return task


def build_gateway(
    settings: Settings, registry: BackendRegistry, stats: StatsRecorder, observability: Observability
) -> Gateway:
    """Admission, routing and forwarding."""
    return Gateway(
        registry,
        stats,
        retry_attempts=settings.retry_attempts,
        retry_budget=RetryBudget(ratio=settings.retry_budget_ratio),
        queue_timeout=settings.queue_timeout_seconds,
        metrics=observability.metrics,
        tracing=observability.tracing,
    )


async def _limiter(stack: AsyncExitStack, settings: Settings, stores: Stores, metrics: Metrics) -> Limiter:
    """Rate and budget counters: in Redis when several processes share them, else in memory."""
    if settings.redis_url:
        namespace = await asyncio.to_thread(installation_id, stores.db)
        counters: RedisCounters | MemoryCounters = RedisCounters(settings.redis_url, namespace=namespace)
        stack.push_async_callback(counters.close)
    else:
        counters = MemoryCounters()
    limiter = Limiter(counters, fail_open=settings.limits_failure_mode == "fail_open", metrics=metrics)
    await seed_budgets(limiter, stores.admin)
    return limiter


def build_meter(limiter: Limiter, caches: Caches, metrics: Metrics) -> Meter:
    """Allow-lists, limits and the usage record's fields (the InferenceService hands it to its sink)."""
    return Meter(limiter, caches.tenants, caches.prices, metrics)


def _app_context(
    settings: Settings,
    stores: Stores,
    caches: Caches,
    gateway: Gateway,
    registry: BackendRegistry,
    service: InferenceService,
    models: LocalModels,
    metrics: Metrics,
) -> AppContext:
    db = stores.db
    return AppContext(
        gateway=gateway,
        registry=registry,
        keys=caches.keys,
        admin_users=caches.admin_users,
        default_chat_model=settings.local_chat_model if models.chat else None,
        version=__version__,
        config=stores.config,
        meter=service.meter,
        service=service,
        admin=stores.admin,
        signing_key=stores.box.signing_key,
        admin_token_minutes=settings.admin_token_minutes,
        jobs=JobRepository(db),
        responses=ResponseRepository(db),
        job_max_attempts=settings.job_max_attempts,
        files=FileRepository(db),
        batches=BatchRepository(db),
        rag=RagService(RagStore(db), gateway, metrics),
        default_embedding_model=settings.local_embedding_model if models.embedding else None,
    )


def _add_health_checks(context: AppContext, db: Database, models: LocalModels, limiter: Limiter) -> None:
    context.health_checks["database"] = database_check(db)
    if models.chat is not None:
        context.health_checks["local_chat_model"] = chat_model_check(models.chat)
    if models.embedding is not None:
        context.health_checks["embedding_model"] = embedding_model_check(models.embedding)
    if isinstance(limiter.counters, RedisCounters):
        context.health_checks["redis"] = redis_check(limiter.counters, limiter)


def build_job_worker(
    settings: Settings, context: AppContext, stores: Stores, database_url: str, metrics: Metrics
) -> JobWorker:
    """The loop that runs queued jobs and batches through the same gateway and meter."""
    return JobWorker(
        context.jobs, context.service, context.keys, database_url=database_url,
        signing_key=context.signing_key, concurrency=settings.job_concurrency,
        lease_seconds=settings.job_lease_seconds, retention_days=settings.job_retention_days, metrics=metrics,
        batches=context.batches, load_key=stores.keys.get, rag=context.rag,
        responses=context.responses,
    )  # fmt: skip


def _health_monitor(settings: Settings, registry: BackendRegistry, gateway: Gateway) -> HealthMonitor:
    return HealthMonitor(
        registry,
        gateway.admission,
        interval=settings.health_check_interval_seconds,
        discovery_interval=settings.discovery_interval_seconds,
    )


# -- background tasks -----------------------------------------------------------------------------------------


def _start_background(
    stack: AsyncExitStack,
    services: Services,
    stores: Stores,
    caches: Caches,
    limiter: Limiter,
    usage_writer: UsageWriter,
    stats: StatsRecorder,
    reload: Reload,
) -> None:
    """The loops beside the requests: writers, refreshes, gauges, the job worker, the health monitor."""
    settings, context, metrics, tasks = services.settings, services.context, services.metrics, services.tasks
    job_counts: dict[str, int] = {}
    budget_ratios: dict[tuple[str, str], float] = {}
    metrics.add_collector(
        StateCollector(
            lambda: context.gateway,
            extra=lambda: [*usage_gauges(usage_writer), job_gauge(job_counts), budget_gauge(budget_ratios)],
        )
    )
    stack.push_async_callback(_stop_background, tasks, stats, usage_writer)  # registered last: runs first
    _start(tasks, "usage-writer", usage_writer.run(settings.usage_flush_seconds))
    _start(tasks, "usage-retention", purge_usage(stores.admin, settings.usage_retention_days))
    _start(
        tasks,
        "response-retention",
        purge_responses(ResponseRepository(stores.db), settings.response_retention_days or settings.job_retention_days),
    )
    _start(tasks, "stats-writer", stats.run(settings.stats_flush_seconds))
    _start(tasks, "cache-refresh", refresh_periodically(reload, settings.cache_refresh_seconds))
    _start(tasks, "job-counts", count_jobs(context.jobs, job_counts))
    _start(tasks, "budgets", track_budgets(caches.tenants, limiter, budget_ratios))
    if metrics.multiprocess:  # --workers N: every worker's gauges reach the scrape, not only the answering one's
        _start(tasks, "shared-gauges", metrics.share_gauges().run())
    if settings.run_job_worker:
        worker = build_job_worker(settings, context, stores, services.database_url, metrics)
        _start(tasks, "job-worker", worker.run())
    if settings.health_check_interval_seconds > 0:  # 0 turns active checks off (passive circuit only)
        _start(tasks, "health-monitor", _health_monitor(settings, context.registry, context.gateway).run())


def _start(tasks: dict[str, asyncio.Task[None]], name: str, loop: Awaitable[None]) -> None:
    tasks[name] = asyncio.ensure_future(loop)
    tasks[name].set_name(name)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _stop_background(tasks: dict[str, asyncio.Task[None]], stats: StatsRecorder, writer: UsageWriter) -> None:
    """Stop the loops, then write what they still held (usage records are money)."""
    for task in tasks.values():
        task.cancel()
    await asyncio.gather(*tasks.values(), return_exceptions=True)
    await stats.flush()
    await writer.flush()
    log.info("usage_flushed", written=writer.written, pending=writer.pending)
