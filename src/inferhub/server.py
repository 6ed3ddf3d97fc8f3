"""``inferhub serve``: the HTTP server around the services, its signals and its drain.

``services.py`` builds and stops everything else. Start-up problems (port in use, unwritable home, missing
model) raise ``StartupError`` with one line saying what to fix; the CLI prints just that line.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from inferhub import __version__
from inferhub.bootstrap import print_startup_banner
from inferhub.runtime.embedded_postgres import StartupError
from inferhub.services import Services, build_services, create_served_app
from inferhub.settings import Settings

log = structlog.get_logger("inferhub.server")


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


async def serve(settings: Settings, sock: socket.socket | None) -> None:
    """Run everything; with ``sock=None`` (``inferhub worker``) everything but the HTTP API.

    Here, not uvicorn, runs the app's lifespan (``lifespan="off"``; ``TestClient`` runs the same lifespan
    in-process). uvicorn would log a failed start-up's traceback (Starlette puts it in
    ``lifespan.startup.failed``) and return normally, losing the ``StartupError`` the CLI prints as one line;
    and it runs the lifespan in a task of its own, where a signal during start-up could not abandon it.
    """
    if sock is None:
        await _serve_worker(settings)
        return
    app = create_served_app(settings)
    server = _Server(_http_config(app, settings))
    _on_signals(_http_signal_handler(settings, app, server))
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        host, port = sock.getsockname()[:2]
        log.info(
            "inferhub_started", host=host, port=port, database="embedded" if services.embedded_database else "external",
            models=services.context.registry.model_names(), version=__version__,
        )  # fmt: skip
        print_startup_banner(settings, host, port)  # the socket listens already
        await server.serve(sockets=[sock])


def _http_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    # timeout_keep_alive: longer than the proxies keep idle connections (nginx keepalive_timeout and HAProxy
    # http-keep-alive are 30 s in deploy/). uvicorn's default of 5 s closed connections the proxy still
    # thought reusable, and a request sent on one as it closed was reset.
    return uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=30,
        server_header=False, proxy_headers=True, forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_keep_alive=75,
    )  # fmt: skip


def _on_signals(handler: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, handler)


def _http_signal_handler(settings: Settings, app: FastAPI, server: _Server) -> Callable[[], None]:
    """SIGTERM/SIGINT: while starting, abandon start-up (what started is cleaned up); once serving, drain.

    The drain keeps serving (``Connection: close``, ``/health/ready`` 503) for
    INFERHUB_SHUTDOWN_DRAIN_SECONDS, then stops; a second signal stops at once.
    """
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()

    def stop_server() -> None:
        server.should_exit = True

    def on_signal() -> None:
        if not server.started:
            if main_task is not None:
                main_task.cancel()
            return
        context = getattr(app.state, "context", None)
        if context is not None and not context.stopping and settings.shutdown_drain_seconds > 0:
            context.stopping = True
            log.info("inferhub_draining", seconds=settings.shutdown_drain_seconds)
            loop.call_later(settings.shutdown_drain_seconds, stop_server)
        else:
            stop_server()

    return on_signal


async def _serve_worker(settings: Settings) -> None:
    """``inferhub worker``: jobs only (and probes/metrics on a port if set), until a signal."""
    main_task = asyncio.current_task()
    started, stop = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:
        if started.is_set():
            stop.set()
        elif main_task is not None:
            main_task.cancel()  # still starting: abandon start-up and clean up what started

    _on_signals(on_signal)
    async with build_services(settings, api=False) as services, _worker_probes(settings, services):
        started.set()
        log.info("inferhub_worker_started", models=services.context.registry.model_names(), version=__version__,
                 health_port=settings.worker_health_port)  # fmt: skip
        await stop.wait()


@contextlib.asynccontextmanager
async def _worker_probes(settings: Settings, services: Services) -> AsyncIterator[None]:
    """With INFERHUB_WORKER_HEALTH_PORT: a small server for the probes and the worker's metrics."""
    if settings.worker_health_port is None:
        yield
        return
    from inferhub.worker_health import create_worker_health_app

    probe_sock = bind_socket(settings.host, settings.worker_health_port)
    probe_app = create_worker_health_app(
        database=services.context.health_checks["database"], job_loop=services.tasks["job-worker"],
        metrics=services.metrics,
    )  # fmt: skip
    probe_server = _Server(uvicorn.Config(probe_app, log_config=None, access_log=False, lifespan="off",
                                          server_header=False))  # fmt: skip
    task = asyncio.create_task(probe_server.serve(sockets=[probe_sock]))
    try:
        yield
    finally:
        probe_server.should_exit = True
        await task


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
