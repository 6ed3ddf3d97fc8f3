"""``inferhub serve --workers N``: one supervisor, N API worker processes on one listening socket.

The supervisor binds the port, starts what must exist once (the embedded
PostgreSQL, migrations, the bootstrap key, the llama.cpp child) and then runs N
``inferhub serve`` worker processes, each listening on its own ``SO_REUSEPORT``
socket on that port (the kernel spreads connections across them). A worker that dies is restarted;
a worker whose supervisor is killed gets SIGTERM (``PR_SET_PDEATHSIG``). Prometheus
counters, histograms and the state gauges are aggregated across workers through
``PROMETHEUS_MULTIPROC_DIR`` (``observability/_shared_gauges.py``). Rate-limit counters are per process unless
``INFERHUB_REDIS_URL`` is set, so set it with several workers.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from contextlib import AsyncExitStack

import structlog

from inferhub.runtime.embedded_postgres import StartupError
from inferhub.runtime.local_chat_model import die_with_parent
from inferhub.settings import Settings

log = structlog.get_logger("inferhub.supervisor")


async def supervise(settings: Settings, sock: socket.socket) -> None:
    from inferhub.bootstrap import (
        ensure_bootstrap_admin,
        ensure_bootstrap_key,
        print_bootstrap_key,
        print_bootstrap_password,
        print_startup_banner,
    )
    from inferhub.home import check_home, open_database
    from inferhub.store import migrate
    from inferhub.store.admin_service import AdminService
    from inferhub.store.backends import BackendRepository
    from inferhub.store.database import Database
    from inferhub.store.keys import KeyRepository
    from inferhub.store.secrets import SecretError, load_master_keys

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)

    async with AsyncExitStack() as stack:
        home = check_home(settings.home)
        try:  # create the master key once, before the workers read it
            load_master_keys(settings.secret_key, settings.secret_key_file, home)
        except SecretError as exc:
            raise StartupError(str(exc)) from None
        url, embedded = await asyncio.to_thread(open_database, settings)
        if embedded is not None:
            stack.callback(embedded.stop)
        await asyncio.to_thread(migrate.upgrade, url)
        db = Database(url)
        try:
            await asyncio.to_thread(BackendRepository(db).sync_from_config, settings.backends)
            new_key = await asyncio.to_thread(ensure_bootstrap_key, KeyRepository(db), settings)
            new_password = await asyncio.to_thread(ensure_bootstrap_admin, AdminService.for_database(db), settings)
        finally:
            db.dispose()
        if new_key:
            print_bootstrap_key(new_key)
        if new_password:
            print_bootstrap_password(new_password, settings)

        host, port = sock.getsockname()[:2]
        env = {
            **os.environ, "INFERHUB_DATABASE_URL": url, "INFERHUB_WORKERS": "1", "INFERHUB_WORKER_CHILD": "1",
            "INFERHUB_HOST": host, "INFERHUB_PORT": str(port),
        }  # fmt: skip
        if settings.local_models:
            from inferhub.runtime.local_chat_model import LocalChatModel

            chat = LocalChatModel(
                alias=settings.local_chat_model, model_path=settings.local_chat_model_path,
                context=settings.local_chat_context, threads=settings.local_chat_threads,
                restart_delay=settings.local_chat_restart_delay_seconds, log_path=home / "logs" / "llama-server.log",
                pid_file=home / "run" / "llama-server.pid",
            )  # fmt: skip
            stack.push_async_callback(chat.stop)
            await chat.start()
            env["INFERHUB_LOCAL_CHAT_URL"] = chat.url
        metrics_dir = home / "prometheus-multiproc"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)

        workers: list[asyncio.subprocess.Process | None] = [None] * settings.workers

        async def spawn(index: int) -> None:
            # Each worker binds its own SO_REUSEPORT socket on the port this process reserved.
            workers[index] = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "inferhub", "serve", "--reuse-port", env=env, preexec_fn=die_with_parent,
            )  # fmt: skip
            log.info("worker_started", worker=index, worker_pid=workers[index].pid)

        for index in range(settings.workers):
            await spawn(index)
        log.info("supervisor_started", workers=settings.workers, port=port)
        print_startup_banner(settings, host, port)

        async def watch(index: int) -> None:
            while not stopping.is_set():
                process = workers[index]
                assert process is not None
                code = await process.wait()
                _mark_dead(process.pid)
                if stopping.is_set():
                    return
                log.warning("worker_exited", worker=index, worker_pid=process.pid, exit_code=code)
                await asyncio.sleep(1.0)
                await spawn(index)

        watchers = [asyncio.create_task(watch(i)) for i in range(settings.workers)]
        await stopping.wait()
        log.info("supervisor_stopping")
        for process in workers:
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGTERM)
        await asyncio.wait([asyncio.create_task(p.wait()) for p in workers if p is not None], timeout=60)
        for process in workers:
            if process is not None and process.returncode is None:
                process.kill()
        for task in watchers:
            task.cancel()
    log.info("supervisor_stopped")


def _mark_dead(pid: int) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
    except Exception:
        pass


def run_workers(settings: Settings, sock: socket.socket) -> int:
    """``sock`` is bound, not listening: it holds the port for the workers' sockets."""
    try:
        asyncio.run(supervise(settings, sock))
    except StartupError as exc:
        print(f"inferhub: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0
