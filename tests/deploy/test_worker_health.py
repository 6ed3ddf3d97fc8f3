"""`inferhub worker` with INFERHUB_WORKER_HEALTH_PORT: the probes and /metrics the deploy bundle points at.

A real PostgreSQL, an `inferhub serve --no-worker`-style API (INFERHUB_RUN_JOB_WORKER=false) in front of a
fake Ollama, and a separate `inferhub worker` process with the health port set, as in
deploy/k8s/base/worker-deployment.yaml, the compose `worker` service and inferhub-worker.service.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import yaml
from deploy_support import DEPLOY

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from support import InferhubProcess, free_port
from support.inferhub_process import BIN

SECRET_KEY = "uJfQ1Qm3o6YQHqH1B9s2QfFZ5oOZ8e6dY5V8N2bU0Ww="
CHAT = {"model": "m", "messages": [{"role": "user", "content": "count the tickets"}]}


def wait_for(condition, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = condition()
            if value:
                return value
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Worker:
    """One `inferhub worker` child on the API's database and settings, its probes on ``health_port``."""

    def __init__(self, api: InferhubProcess, health_port: int) -> None:
        self.health_url = f"http://127.0.0.1:{health_port}"
        self.log = api.home / f"worker-{health_port}.log"
        env = {**api.env, "INFERHUB_WORKER_HEALTH_PORT": str(health_port)}
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([str(BIN / "inferhub"), "worker"], env=env, cwd=api.home, stdout=out,
                                            stderr=subprocess.STDOUT)  # fmt: skip
        wait_for(lambda: self.process.poll() is not None or "job_worker_started" in self.output(), "the worker")
        assert self.process.poll() is None, self.output()[-3000:]

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.health_url + path, timeout=10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedPostgres, str]]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("worker-health-pg") / "pg")
    yield pg, pg.start()
    pg.stop()


@pytest.fixture(scope="module")
def api(tmp_path_factory, engine: BackgroundServer, postgres) -> Iterator[InferhubProcess]:
    config = {"backends": [{"model_name": "m", "backend_type": "ollama", "endpoint_url": engine.url}]}
    env = {"INFERHUB_DATABASE_URL": postgres[1], "INFERHUB_RUN_JOB_WORKER": "false",
           "INFERHUB_SECRET_KEY": SECRET_KEY}  # fmt: skip
    with InferhubProcess(tmp_path_factory.mktemp("worker-health-api"), local_models=False, config=config,
                         env=env) as process:  # fmt: skip
        yield process


@pytest.fixture(scope="module")
def worker(api: InferhubProcess) -> Iterator[Worker]:
    process = Worker(api, free_port())
    yield process
    process.stop()


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the series ``name`` whose labels include ``labels`` in a /metrics text."""
    for line in text.splitlines():
        match = re.match(r"^(\w+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_probes_answer_while_the_worker_runs(worker: Worker) -> None:
    live = worker.get("/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    ready = worker.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "migrations": "current"}
    assert worker.get("/v1/models").status_code == 404, "the worker's port serves probes and metrics, no API"


def test_metrics_are_the_workers_own(api: InferhubProcess, worker: Worker) -> None:
    key = api.cli("keys", "create", "worker-health", "--scope", "jobs", "--scope", "inference").stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    wait_for(lambda: httpx.get(f"{api.url}/v1/jobs", headers=headers).status_code == 200, "the new key")
    job = httpx.post(f"{api.url}/v1/jobs", headers=headers, json={"type": "chat.completions", "body": CHAT})
    assert job.status_code == 202, job.text

    def finished() -> dict | None:
        state = httpx.get(f"{api.url}/v1/jobs/{job.json()['id']}", headers=headers).json()
        return state if state["status"] in ("succeeded", "failed", "cancelled") else None

    assert wait_for(finished, "the job")["status"] == "succeeded"
    reply = worker.get("/metrics")
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    # The job's upstream call and its usage were recorded by the worker, the process that made them.
    assert sample(reply.text, "llm_inference_duration_seconds_count", model="m") == 1.0, reply.text
    backend = re.search(r'llm_tokens_generated_total\{[^}]*backend="([^"]+)"', reply.text)
    assert backend, reply.text
    assert sample(reply.text, "llm_tokens_generated_total", model="m", backend=backend.group(1)) > 0
    assert sample(reply.text, "llm_usage_tokens_total", model="m", kind="completion") > 0
    assert sample(reply.text, "llm_backend_up", model="m") == 1.0
    # llm_jobs is refreshed every 5 s from the database.
    wait_for(lambda: sample(worker.get("/metrics").text, "llm_jobs", state="succeeded") == 1.0, "llm_jobs")
    # The API process forwarded nothing itself: the counts above are not the API's.
    api_metrics = httpx.get(f"{api.url}/metrics").text
    assert sample(api_metrics, "llm_inference_duration_seconds_count", model="m") is None


def test_shipped_deployments_point_their_probes_at_the_setting() -> None:
    """The k8s worker probes the port INFERHUB_WORKER_HEALTH_PORT opens; Prometheus scrapes it."""
    worker = yaml.safe_load((DEPLOY / "k8s/base/worker-deployment.yaml").read_text())
    pod = worker["spec"]["template"]
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    port = int(env["INFERHUB_WORKER_HEALTH_PORT"])
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe"):
        assert named[container[probe]["httpGet"]["port"]] == port, probe
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == str(port)
    assert "INFERHUB_WORKER_PORT" not in env
    unit = (DEPLOY / "systemd/inferhub-worker.service").read_text()
    assert re.search(r"^Environment=INFERHUB_WORKER_HEALTH_PORT=\d+$", unit, re.M)


def test_ready_fails_when_the_database_goes(api: InferhubProcess, worker: Worker, postgres) -> None:
    """Last in the module: it stops the database under both processes."""
    assert worker.get("/health/ready").status_code == 200
    postgres[0].stop()

    def not_ready() -> dict | None:
        reply = worker.get("/health/ready")
        return reply.json() if reply.status_code == 503 else None

    body = wait_for(not_ready, "readiness to fail")
    assert body["status"] == "not_ready"
    assert any(problem.startswith("database") for problem in body["problems"]), body

    # The API's readiness names the reason for anyone, the database's own error (hosts, ports) only for an admin.
    def api_not_ready(headers: dict[str, str]) -> dict | None:
        reply = httpx.get(f"{api.url}/health/ready", headers=headers, timeout=30)
        return reply.json() if reply.status_code == 503 else None

    anonymous = wait_for(lambda: api_not_ready({}), "the API's readiness to fail")
    assert [p for p in anonymous["problems"] if p.startswith("database")] in (
        ["database: unhealthy"],
        ["database: unreachable"],
    ), anonymous
    admin = wait_for(lambda: api_not_ready(api.headers), "the API's readiness to fail, as an admin")
    detail = next(p for p in admin["problems"] if p.startswith("database"))
    assert detail not in ("database: unhealthy", "database: unreachable"), admin
