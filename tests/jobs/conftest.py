"""Fixtures of the job tests: one PostgreSQL and one API process without a job worker for the whole folder.

The API runs in ``--no-worker`` mode in front of fake Ollama engines; tests start and kill their own
``inferhub worker`` processes (``jobs_support.Worker``). ``test_batches.py`` uses the default install
(embedded model) instead. The helpers themselves are in ``jobs_support.py`` beside this file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs_support import MAX_ATTEMPTS, SECRET_KEY, Worker

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from support import InferhubProcess


@pytest.fixture(scope="package")
def engines() -> Iterator[dict[str, BackgroundServer]]:
    fast = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    slow = BackgroundServer(create_fake_ollama_app(models=["slow"])).start()
    flaky = BackgroundServer(create_fake_ollama_app(models=["flaky"])).start()
    yield {"fast": fast, "slow": slow, "flaky": flaky}
    for server in (fast, slow, flaky):
        server.stop()


@pytest.fixture(scope="package")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("jobs-pg"))
    yield pg.start()
    pg.stop()


@pytest.fixture(scope="package")
def api(tmp_path_factory, engines, database) -> Iterator[InferhubProcess]:
    config = {"backends": [
        {"model_name": "m", "backend_type": "ollama", "endpoint_url": engines["fast"].url},
        {"model_name": "slow", "backend_type": "ollama", "endpoint_url": engines["slow"].url, "max_concurrency": 1},
        {"model_name": "flaky", "backend_type": "ollama", "endpoint_url": engines["flaky"].url},
    ]}  # fmt: skip
    env = {"INFERHUB_DATABASE_URL": database, "INFERHUB_RUN_JOB_WORKER": "false", "INFERHUB_SECRET_KEY": SECRET_KEY,
           "INFERHUB_JOB_MAX_ATTEMPTS": str(MAX_ATTEMPTS)}  # fmt: skip
    process = InferhubProcess(tmp_path_factory.mktemp("jobs-api"), local_models=False, config=config, env=env)
    with process:
        yield process


@pytest.fixture
def worker(api: InferhubProcess) -> Iterator[Worker]:
    w = Worker(api, "default", INFERHUB_JOB_LEASE_SECONDS="3")
    yield w
    w.stop()
