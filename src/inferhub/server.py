"""``inferhub serve``: start the embedded services, load the caches, run the HTTP server, stop in order.

Start-up problems (port in use, unwritable home, missing model) raise
``StartupError`` with one line saying what to fix; the CLI prints just that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import structlog
import uvicorn

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
    print_startup_banner,
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
from inferhub.housekeeping import (
    budget_gauge,
    count_jobs,
    job_gauge,
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
from inferhub.store.secrets import SecretBox, SecretError, load_master_keys

log = structlog.get_logger("inferhub.server")


def check_home(home: Path) -> Path:
    home = home.resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"INFERHUB_HOME {home} is not writable ({exc.strerror}): set INFERHUB_HOME to a writable directory"
        ) from None
    return home


def bind_socket(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """Bind the API's port. ``reuse_port`` lets each worker of ``--workers N`` bind its own socket on it.

    With one socket shared by all workers, whichever worker wakes first accepts a whole burst of
    connections, so keep-alive clients all pinned to one worker; with ``SO_REUSEPORT`` the kernel spreads
    connections by hash. The supervisor binds without listening: that reserves the port (and reports a
    port in use) but takes no connections.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted connections only when the proto
    # says TCP. Without it Nagle holds a response's body behind its headers until the client's delayed ACK:
    # +40 ms on every request of a keep-alive connection (the openai and ollama SDKs keep connections).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == 98:
            raise StartupError(
                f"port {port} on {host} is already in use: stop the other process or choose another "
                "port with --port or INFERHUB_PORT"
            ) from None
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    if listen:
        sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: Inferhub stops it, then the services, in order."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def open_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The database URL to use: ``INFERHUB_DATABASE_URL``, or the embedded server (started if needed)."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.postgres_dir)
    url = embedded.start()
    return url, embedded


async def serve(settings: Settings, sock: socket.socket | None) -> None:
    """Run everything; with ``sock=None`` (``inferhub worker``) everything but the HTTP API."""
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    server: _Server | None = None
    serving: list[AppContext] = []  # the app's context once it serves (for the drain)
    stop_worker_only = asyncio.Event()

    def stop_server() -> None:
        if server is not None:
            server.should_exit = True

    def on_signal() -> None:
        if sock is None and stop_worker_only is not None and started.is_set():
            stop_worker_only.set()
        elif server is not None and server.started:
            context = serving[0] if serving else None
            if context is not None and not context.stopping and settings.shutdown_drain_seconds > 0:
                # Drain: keep serving (Connection: close, /health/ready 503), then stop. A second signal
                # stops at once.
                context.stopping = True
                log.info("inferhub_draining", seconds=settings.shutdown_drain_seconds)
                loop.call_later(settings.shutdown_drain_seconds, stop_server)
            else:
                stop_server()
        elif main_task is not None:
            main_task.cancel()  # still starting: abandon start-up and clean up what started

    started = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    async with AsyncExitStack() as stack:
        home = check_home(settings.home)
        chat_model = embedding_model = None
        if settings.local_models and settings.local_chat_url:
            from inferhub.runtime.attached_chat_model import AttachedChatModel
            from inferhub.runtime.local_embedding_model import LocalEmbeddingModel

            chat_model = AttachedChatModel(settings.local_chat_model, settings.local_chat_url)
            embedding_model = LocalEmbeddingModel(settings.local_embedding_model)
        elif settings.local_models:
            from inferhub.runtime.local_chat_model import LocalChatModel
            from inferhub.runtime.local_embedding_model import LocalEmbeddingModel

            chat_model = LocalChatModel(
                alias=settings.local_chat_model,
                model_path=settings.local_chat_model_path,
                context=settings.local_chat_context,
                threads=settings.local_chat_threads,
                restart_delay=settings.local_chat_restart_delay_seconds,
                log_path=home / "logs" / "llama-server.log",
                pid_file=home / "run" / "llama-server.pid",
            )
            embedding_model = LocalEmbeddingModel(settings.local_embedding_model)

        # The slow parts run side by side: PostgreSQL, the llama.cpp child and the torch import.
        embedded_pg: list[EmbeddedPostgres] = []

        def start_database() -> str:
            url, embedded = open_database(settings)
            if embedded is not None:
                embedded_pg.append(embedded)
            if not settings.worker_child:  # the supervisor migrated already
                migrate.upgrade(url)
            return url

        database_task = asyncio.create_task(asyncio.to_thread(start_database))
        stack.callback(lambda: [pg.stop() for pg in embedded_pg])
        tasks: list[asyncio.Future] = [database_task]
        if chat_model is not None:
            stack.push_async_callback(chat_model.stop)
            tasks.append(asyncio.create_task(chat_model.start()))
        if embedding_model is not None:
            stack.callback(embedding_model.close)
            tasks.append(asyncio.create_task(asyncio.to_thread(embedding_model.load)))
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        database_url = database_task.result()

        db = Database(database_url)
        stack.callback(db.dispose)
        try:
            box = SecretBox(load_master_keys(settings.secret_key, settings.secret_key_file, home))
        except SecretError as exc:
            raise StartupError(str(exc)) from None
        key_repo, backend_repo = KeyRepository(db), BackendRepository(db, box)
        config_service = ConfigService(db, box)
        admin_service = AdminService.for_database(db)
        if not settings.worker_child:  # done once, by the supervisor or the single process
            await asyncio.to_thread(backend_repo.sync_from_config, settings.backends)
            await asyncio.to_thread(config_service.routes.sync_from_config, settings.models, settings.aliases)
        new_key = await asyncio.to_thread(ensure_bootstrap_key, key_repo, settings)
        if new_key:
            print_bootstrap_key(new_key)
        if not settings.worker_child and sock is not None:  # the API's (the supervisor's with --workers N)
            new_password = await asyncio.to_thread(ensure_bootstrap_admin, admin_service, settings)
            if new_password:
                print_bootstrap_password(new_password, settings)
        for model, price in settings.prices.items():
            await asyncio.to_thread(lambda m=model, p=price: admin_service.usage.set_price(
                m, Decimal(str(p.prompt)), Decimal(str(p.completion)), actor="config", source="config"))  # fmt: skip

        registry = BackendRegistry(
            RoutingDefaults(
                strategy=settings.default_strategy,
                max_concurrency=settings.default_max_concurrency,
                failure_threshold=settings.circuit_failure_threshold,
                cooldown_seconds=settings.circuit_cooldown_seconds,
            ),
            decrypt=box.decrypt,
        )
        stack.push_async_callback(registry.close)
        keys, admin_users = KeyCache(), AdminUserCache()
        admin_service.report_changes(keys=keys.put, users=admin_users.apply)  # this replica sees its writes at once
        if chat_model is not None:
            local = Backend(
                id=f"local:{chat_model.alias}", model_name=chat_model.alias, backend_type="llamacpp",
                endpoint_url=chat_model.url, source="local", description="embedded llama.cpp (SmolLM2-135M)",
                timeout_seconds=300.0, max_concurrency=2,  # llama-cpp-python generates one request at a time
                capabilities=frozenset({"chat", "completions"}),  # started without embedding=True
                context_tokens=settings.local_chat_context,
            )  # fmt: skip
            adapter = OpenAIAdapter(local, registry.client_for(local.endpoint_url, 300.0))
            model_file = getattr(chat_model, "model_path", None) or settings.local_chat_model_path
            counter = ChatPromptCounter(model_file or packaged_model_path())  # streams bill the engine's count
            await asyncio.to_thread(counter.load)
            adapter.prompt_counter = counter.count
            registry.add_local(local, adapter)
        if embedding_model is not None:
            local = Backend(
                id=f"local:{embedding_model.name}", model_name=embedding_model.name, backend_type="embedded",
                endpoint_url="embedded://" + embedding_model.name, source="local",
                description="embedded sentence-transformers (all-MiniLM-L6-v2, 384 dimensions)",
                capabilities=frozenset({"embeddings"}),
            )  # fmt: skip
            registry.add_local(local, EmbeddedAdapter(local, embedding_model))

        tenants, prices = TenantCache(), PriceCache()

        async def reload(kind: str) -> None:
            if kind in ("keys", "*"):
                since = keys.generation  # writes made here while the rows are read are kept on top
                keys.replace(await asyncio.to_thread(key_repo.list), loaded_since=since)
            if kind in ("admin_users", "*"):
                since = admin_users.generation
                admin_users.replace(await asyncio.to_thread(admin_service.users.list), loaded_since=since)
            if kind in ("tenants", "*"):
                tenants.replace(await asyncio.to_thread(admin_service.tenants.list))
            if kind in ("prices", "*"):
                prices.replace(await asyncio.to_thread(admin_service.usage.prices))
            if kind in ("backends", "*"):
                registry.replace_stored(await asyncio.to_thread(backend_repo.list))
                routes = await asyncio.to_thread(config_service.routes.list_routes)
                registry.replace_routes(routes, await asyncio.to_thread(config_service.routes.list_aliases))
            log.debug("cache_reloaded", kind=kind)

        # Listen first, then load: a change committed between the two would otherwise wait for the periodic
        # refresh (INFERHUB_CACHE_REFRESH_SECONDS) on this replica.
        listener = ChangeListener(database_url, reload)
        listener_task = asyncio.create_task(listener.run(), name="change-listener")
        stack.callback(listener_task.cancel)
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
        await reload("*")

        stats = StatsRecorder(backend_repo.add_stats)
        metrics = Metrics(tenant_label=settings.metrics_tenant_label)
        tracing = Tracing.otlp(settings.otlp_endpoint, settings.service_name) if settings.otlp_endpoint else None
        if tracing is not None:
            stack.callback(tracing.shutdown)
        gateway = Gateway(
            registry,
            stats,
            retry_attempts=settings.retry_attempts,
            retry_budget=RetryBudget(ratio=settings.retry_budget_ratio),
            queue_timeout=settings.queue_timeout_seconds,
            metrics=metrics,
            tracing=tracing,
        )
        if settings.redis_url:
            counters = RedisCounters(settings.redis_url, namespace=await asyncio.to_thread(installation_id, db))
            stack.push_async_callback(counters.close)
        else:
            counters = MemoryCounters()
        limiter = Limiter(counters, fail_open=settings.limits_failure_mode == "fail_open", metrics=metrics)
        await seed_budgets(limiter, admin_service)
        usage_writer = UsageWriter(admin_service.usage.insert_many)
        meter = Meter(limiter, tenants, prices, metrics)
        service = InferenceService(gateway, meter, usage_writer)  # the one pipeline: routes, RAG, jobs, playground
        job_counts: dict[str, int] = {}
        budget_ratios: dict[tuple[str, str], float] = {}
        metrics.add_collector(
            StateCollector(
                lambda: gateway,
                extra=lambda: [*usage_gauges(usage_writer), job_gauge(job_counts), budget_gauge(budget_ratios)],
            )
        )
        monitor = HealthMonitor(
            registry,
            gateway.admission,
            interval=settings.health_check_interval_seconds,
            discovery_interval=settings.discovery_interval_seconds,
        )
        context = AppContext(
            gateway=gateway,
            registry=registry,
            keys=keys,
            admin_users=admin_users,
            default_chat_model=settings.local_chat_model if chat_model else None,
            version=__version__,
            config=config_service,
            meter=meter,
            service=service,
            admin=admin_service,
            signing_key=box.signing_key,
            admin_token_minutes=settings.admin_token_minutes,
            jobs=JobRepository(db),
            job_max_attempts=settings.job_max_attempts,
            files=FileRepository(db),
            batches=BatchRepository(db),
            default_embedding_model=settings.local_embedding_model if embedding_model else None,
        )
        context.rag = RagService(RagStore(db), gateway, metrics)
        context.health_checks["database"] = database_check(db)
        if chat_model is not None:
            context.health_checks["local_chat_model"] = chat_model_check(chat_model)
        if embedding_model is not None:
            context.health_checks["embedding_model"] = embedding_model_check(embedding_model)
        if settings.redis_url:
            context.health_checks["redis"] = redis_check(counters, limiter)

        background = [
            asyncio.create_task(usage_writer.run(settings.usage_flush_seconds), name="usage-writer"),
            asyncio.create_task(purge_usage(admin_service, settings.usage_retention_days), name="usage-retention"),
            listener_task,
            asyncio.create_task(stats.run(settings.stats_flush_seconds), name="stats-writer"),
            asyncio.create_task(refresh_periodically(reload, settings.cache_refresh_seconds)),
        ]
        background.append(asyncio.create_task(count_jobs(context.jobs, job_counts), name="job-counts"))
        background.append(asyncio.create_task(track_budgets(tenants, limiter, budget_ratios), name="budgets"))
        if metrics.multiprocess:  # --workers N: every worker's gauges reach the scrape, not only the answering one's
            background.append(asyncio.create_task(metrics.share_gauges().run(), name="shared-gauges"))
        if settings.run_job_worker:
            worker = JobWorker(
                context.jobs, service, keys, database_url=database_url, signing_key=box.signing_key,
                concurrency=settings.job_concurrency, lease_seconds=settings.job_lease_seconds,
                retention_days=settings.job_retention_days, metrics=metrics, batches=context.batches,
                load_key=key_repo.get, rag=context.rag,
            )  # fmt: skip
            background.append(asyncio.create_task(worker.run(), name="job-worker"))
        if settings.health_check_interval_seconds > 0:  # 0 turns active checks off (passive circuit only)
            background.append(asyncio.create_task(monitor.run(), name="health-monitor"))

        if sock is None:  # `inferhub worker`: jobs only (and probes/metrics on a port if set), until a signal
            probes: tuple[_Server, asyncio.Task] | None = None
            if settings.worker_health_port is not None:
                from inferhub.worker_health import create_worker_health_app

                probe_sock = bind_socket(settings.host, settings.worker_health_port)
                job_loop = next(task for task in background if task.get_name() == "job-worker")
                probe_app = create_worker_health_app(
                    database=context.health_checks["database"], job_loop=job_loop, metrics=metrics
                )
                probe_server = _Server(uvicorn.Config(probe_app, log_config=None, access_log=False,
                                                      lifespan="off", server_header=False))  # fmt: skip
                probes = probe_server, asyncio.create_task(probe_server.serve(sockets=[probe_sock]))
            started.set()
            log.info("inferhub_worker_started", models=registry.model_names(), version=__version__,
                     health_port=settings.worker_health_port)  # fmt: skip
            await stop_worker_only.wait()
            if probes is not None:
                probes[0].should_exit = True
                await probes[1]
        else:
            app = create_app(context, max_body_bytes=settings.max_body_bytes, metrics=metrics, tracing=tracing)
            serving.append(context)
            # timeout_keep_alive: longer than the proxies keep idle connections (nginx keepalive_timeout and
            # HAProxy http-keep-alive are 30 s in deploy/). uvicorn's default of 5 s closed connections the
            # proxy still thought reusable, and a request sent on one as it closed was reset.
            config = uvicorn.Config(
                app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=30,
                server_header=False, proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
                timeout_keep_alive=75,
            )  # fmt: skip
            server = _Server(config)
            host, port = sock.getsockname()[:2]
            log.info(
                "inferhub_started", host=host, port=port, database="embedded" if embedded_pg else "external",
                models=registry.model_names(), version=__version__,
            )  # fmt: skip
            print_startup_banner(settings, host, port)  # the socket listens already
            await server.serve(sockets=[sock])
        log.info("inferhub_stopping")
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await stats.flush()
        await usage_writer.flush()
        log.info("usage_flushed", written=usage_writer.written, pending=usage_writer.pending)
    log.info("inferhub_stopped")


def run(settings: Settings, listen_fd: int | None = None, reuse_port: bool = False) -> int:
    """Entry point of ``inferhub serve``; returns the process exit code.

    ``listen_fd`` serves a socket bound by someone else (the benchmark harness); ``reuse_port`` is how a
    worker of ``--workers N`` binds its own socket on the supervisor's port.
    """
    try:
        if settings.workers > 1 and listen_fd is None and not reuse_port:
            from inferhub.supervisor import run_workers

            reserved = bind_socket(settings.host, settings.port, reuse_port=True, listen=False)
            return run_workers(settings, reserved)
        if listen_fd is not None:
            sock = socket.socket(fileno=listen_fd)
        else:
            sock = bind_socket(settings.host, settings.port, reuse_port=reuse_port)
        _run_loop(serve(settings, sock))
    except StartupError as exc:
        print(f"inferhub: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        return 0
    return 0


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop when it is installed (uvicorn[standard] brings it): a faster loop for the same code."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
