"""The wiring in-process: ``create_served_app`` starts the real services through its lifespan, and leaving
(or failing half-way through start-up) closes what was opened: no task left, no connection left open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

import inferhub.services
from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres, StartupError
from inferhub.services import build_services, create_served_app
from inferhub.settings import Settings
from inferhub.store.database import libpq_url
from support.inferhub_process import free_port

API_KEY = "ih-test-services-key"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("services-pg"))
    yield pg.start()
    pg.stop()


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    yield server
    server.stop()


def _settings(home: Path, monkeypatch: pytest.MonkeyPatch, **overrides: Any) -> Settings:
    monkeypatch.setenv("INFERHUB_CONFIG_FILE", str(home / "absent.yaml"))  # no stray inferhub.yaml
    values: dict[str, Any] = {
        "home": home, "local_models": False, "api_key": API_KEY, "health_check_interval_seconds": 0.5,
        "usage_flush_seconds": 3600,  # only the flush on the way out writes the usage record
    }  # fmt: skip
    return Settings(**{**values, **overrides})


def _app_connections(database_url: str) -> int:
    """Connections to the database other than this one (the app's pool and its LISTEN connection)."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _wait_for_no_connections(database_url: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while (left := _app_connections(database_url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _usage_rows(database_url: str, model: str) -> int:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM usage_records WHERE model = %s", (model,)).fetchone()
    assert row is not None
    return int(row[0])


def test_served_app_serves_in_process_and_closes_everything_on_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str, engine: BackgroundServer
) -> None:
    backends = [{"model_name": "m", "backend_type": "ollama", "endpoint_url": engine.url}]
    app = create_served_app(_settings(tmp_path, monkeypatch, database_url=database, backends=backends))
    usage_before = _usage_rows_or_zero(database)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        services = app.state.services
        assert client.get("/health/ready").status_code == 200
        reply = client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        )
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"] == "echo: hi"
        assert reply.headers["x-inferhub-backend"]
        tasks = dict(services.tasks)
        assert {
            "change-listener",
            "usage-writer",
            "stats-writer",
            "job-worker",
            "health-monitor",
            "response-retention",
        } <= set(tasks)
        assert not any(task.done() for task in tasks.values()), "a background loop died while serving"
        assert _app_connections(database) > 0
    assert all(task.done() for task in tasks.values())
    assert app.state.context is None  # the routes no longer reach the stopped services
    assert _wait_for_no_connections(database) == 0, "the pool or the LISTEN connection outlived the app"
    assert _usage_rows(database, "m") == usage_before + 1  # the writer flushed its pending record on the way out


def _usage_rows_or_zero(database_url: str) -> int:
    try:
        return _usage_rows(database_url, "m")
    except psycopg.errors.UndefinedTable:  # not migrated yet: the first start migrates
        return 0


def test_unreachable_database_is_a_clear_startup_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://inferhub@127.0.0.1:{free_port()}/inferhub"
    app = create_served_app(_settings(tmp_path, monkeypatch, database_url=url))
    with pytest.raises(StartupError, match="cannot use the database of INFERHUB_DATABASE_URL"), TestClient(app):
        pass


def test_startup_failing_half_way_unwinds_what_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail after the embedded PostgreSQL, the pool and the LISTEN task are up: all of them are stopped."""

    async def refuse(*args: object) -> None:
        raise StartupError("budgets refused")

    monkeypatch.setattr(inferhub.services, "seed_budgets", refuse)
    settings = _settings(tmp_path / "home", monkeypatch)  # no database URL: the embedded PostgreSQL

    async def start() -> set[asyncio.Task[Any]]:
        with pytest.raises(StartupError, match="budgets refused"):
            async with build_services(settings):
                pass
        return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]

    assert asyncio.run(start()) == set()
    assert (settings.postgres_dir / "PG_VERSION").exists()  # it did start …
    assert not (settings.postgres_dir / "postmaster.pid").exists()  # … and was stopped
