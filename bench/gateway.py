"""Inferhub under test: ``inferhub serve`` as shipped, in front of the static upstream.

A temporary ``INFERHUB_HOME`` (embedded PostgreSQL, or ``--database-url``), ``INFERHUB_LOCAL_MODELS=false``,
and an ``inferhub.yaml`` that registers the upstream as two ``openai`` backends: model ``bench`` on
nginx's JSON port and ``bench-stream`` on its SSE port (``discover_models: false``; health checks
stay on, against nginx's ``/v1/models``), with a price so cost accounting runs. Once it answers, the
harness creates through the admin API a tenant and an inference key of that tenant, both with every
limit set (high, so nothing is refused, but present, so the limiter counts each request: rpm, tpm,
concurrency, daily/monthly tokens and cost). Metrics, usage records, request logging at ``info`` and
the fair-queue admission all run as shipped; only the backends' ``max_concurrency`` is raised from the
default 8 (a limit for slow engines: at concurrency 16 it would measure queue hand-offs, not the gateway).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.upstream import StaticUpstream, free_port

ADMIN_KEY = "ih-bench-admin-key-0000000000000000"
HIGH = 1_000_000_000
KEY_LIMITS = {
    "rpm": HIGH,
    "tpm": HIGH,
    "concurrency": 100_000,
    "daily_tokens": HIGH,
    "monthly_tokens": HIGH,
    "daily_cost": 1e9,
    "monthly_cost": 1e9,
}
TENANT_LIMITS = {"rpm": HIGH, "tpm": HIGH, "daily_tokens": HIGH, "monthly_cost": 1e9}


def inferhub_command() -> list[str]:
    script = Path(sys.executable).parent / "inferhub"
    return [str(script)] if script.exists() else [sys.executable, "-m", "inferhub"]


@dataclass
class Gateway:
    upstream: StaticUpstream
    workers: int = 1
    redis_url: str | None = None
    database_url: str | None = None
    backend_max_concurrency: int = 4096
    log_level: str = "info"
    env: dict[str, str] = field(default_factory=dict)
    home: Path | None = None
    # Bind the port here (IPPROTO_TCP) and hand it over with `serve --listen-fd`: what the one-line fix
    # of server.bind_socket gives (asyncio then sets TCP_NODELAY). Single process only.
    inherit_socket: bool = False
    # Experiment only: run the gateway on uvloop (a sitecustomize.py in INFERHUB_HOME sets the event loop
    # policy before `inferhub serve` calls asyncio.run). Measures what switching to uvloop would buy.
    uvloop: bool = False
    # Experiment only: tracemalloc with this many frames; SIGUSR2 writes a snapshot (see snapshot()).
    tracemalloc_frames: int = 0
    # Run this source tree's `inferhub` package (PYTHONPATH) instead of the installed one: a snapshot of a
    # commit (see snapshot_source) keeps a benchmark reproducible while the working tree changes.
    src: Path | None = None

    def __post_init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._socket: socket.socket | None = None
        self.key: str | None = None
        self.tenant_id: int | None = None
        self._own_home = self.home is None

    def config(self) -> dict[str, Any]:
        common = {
            "backend_type": "openai",
            "upstream_model": "bench-upstream",
            "discover_models": False,
            "max_concurrency": self.backend_max_concurrency,
            "timeout_seconds": 30,
        }
        return {
            "backends": [
                {"model_name": "bench", "endpoint_url": self.upstream.json_url, **common},
                {"model_name": "bench-stream", "endpoint_url": self.upstream.sse_url, **common},
            ],
            "prices": {"bench": {"prompt": 0.5, "completion": 1.5}, "bench-stream": {"prompt": 0.5, "completion": 1.5}},
        }

    def start(self, timeout: float = 180.0) -> Gateway:
        """Start and provision; on any failure the process is stopped (and the temp home removed)."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> Gateway:
        if self.home is None:
            self.home = Path(tempfile.mkdtemp(prefix="inferhub-bench-home-"))
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "inferhub.yaml").write_text(yaml.safe_dump(self.config()))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("INFERHUB_", "PROMETHEUS_MULTIPROC"))}
        env.update(
            {
                "INFERHUB_HOME": str(self.home),
                "INFERHUB_CONFIG_FILE": str(self.home / "inferhub.yaml"),
                "INFERHUB_HOST": "127.0.0.1",
                "INFERHUB_PORT": str(self.port),
                "INFERHUB_LOCAL_MODELS": "false",
                "INFERHUB_API_KEY": ADMIN_KEY,
                "INFERHUB_WORKERS": str(self.workers),
                "INFERHUB_LOG_LEVEL": self.log_level,
            }
        )
        hooks = []
        if self.uvloop:
            hooks.append("import asyncio\nimport uvloop\nasyncio.set_event_loop_policy(uvloop.EventLoopPolicy())")
        if self.tracemalloc_frames:
            hooks.append(_TRACEMALLOC_HOOK.format(frames=self.tracemalloc_frames, out=self.home / "tracemalloc"))
        if self.src is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.src), env.get("PYTHONPATH")]))
        if hooks:
            hook = self.home / "bench-hooks"
            hook.mkdir(exist_ok=True)
            (hook / "sitecustomize.py").write_text("\n".join(hooks) + "\n")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
        if self.redis_url:
            env["INFERHUB_REDIS_URL"] = self.redis_url
        if self.database_url:
            env["INFERHUB_DATABASE_URL"] = self.database_url
        env.update(self.env)
        self.log_path = self.home / "serve.log"
        command, fds = [*inferhub_command(), "serve"], ()
        if self.inherit_socket and self.workers == 1:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._socket.bind(("127.0.0.1", self.port))
            self._socket.listen(2048)
            self._socket.set_inheritable(True)
            fds = (self._socket.fileno(),)
            command += ["--listen-fd", str(self._socket.fileno())]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command, env=env, cwd=self.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, pass_fds=fds
        )
        log.close()
        if self._socket is not None:  # the server has its copy; ours would queue connections nobody accepts
            self._socket.close()
            self._socket = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"inferhub exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"inferhub did not answer within {timeout}s:\n{self.log_tail()}")
        # Each worker loads the caches before its change listener connects: a key created before every
        # worker has started can miss one until the periodic refresh. Provision once all have started.
        while self.workers > 1 and self._events("inferhub_started") < self.workers:
            if time.monotonic() > deadline:
                raise RuntimeError(f"not every worker started within {timeout}s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.key = self.provision()
        return self

    def check_alive(self) -> None:
        """Raise with the log's tail if the gateway exited (a benchmark must not measure a dead server)."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise RuntimeError(f"the gateway exited during the benchmark (code {code}):\n{self.log_tail(1500)}")

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)

    def provision(self, name: str = "bench", key_limits: dict | None = None, tenant_limits: dict | None = None) -> str:
        """A tenant and an inference key of it, limits set; waits until every worker knows the key."""
        with self.admin() as admin:
            tenants = {t["name"]: t for t in admin.get("/api/tenants").raise_for_status().json()["data"]}
            tenant = tenants.get(name)
            if tenant is None:
                tenant = admin.post("/api/tenants", json={"name": name, "limits": tenant_limits or TENANT_LIMITS})
                tenant = tenant.raise_for_status().json()
            self.tenant_id = tenant["id"]
            created = admin.post(
                f"/api/tenants/{tenant['id']}/keys", json={"name": f"{name}-key", "limits": key_limits or KEY_LIMITS}
            )
            key = created.raise_for_status().json()["key"]
        self.wait_for_key(key)
        return key

    def wait_for_key(self, key: str, timeout: float = 45.0) -> None:
        """A new key reaches each worker through NOTIFY; with several workers, ask until 20 answers in a row pass."""
        deadline = time.monotonic() + timeout
        streak = 0
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < deadline:
                answer = client.get(
                    f"{self.url}/v1/models", headers={"Authorization": f"Bearer {key}", "Connection": "close"}
                )
                streak = streak + 1 if answer.status_code == 200 else 0
                if streak >= (20 if self.workers > 1 else 1):
                    return
                time.sleep(0.02)
        raise RuntimeError(f"the bench key did not reach the gateway within {timeout}s")

    # -- what the report reads ---------------------------------------------------------------------

    def processes(self) -> list[Any]:
        """The gateway's Python processes: the server (or supervisor and workers), not PostgreSQL."""
        import psutil

        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            found = [root]
            for child in root.children(recursive=True):
                try:
                    if "python" in child.name() or "inferhub" in " ".join(child.cmdline()):
                        found.append(child)
                except psutil.Error:
                    continue
            return found
        except psutil.Error:
            return []

    def worker_pids(self) -> list[int]:
        procs = self.processes()
        return [p.pid for p in (procs[1:] if self.workers > 1 else procs)]

    def rss_bytes(self) -> int:
        total = 0
        for proc in self.processes():
            try:
                total += proc.memory_info().rss
            except Exception:
                continue
        return total

    def metrics_text(self) -> str:
        return httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30).text

    def snapshot(self, timeout: float = 60.0) -> Path:
        """With ``tracemalloc_frames``: ask the server for a tracemalloc snapshot; returns its path."""
        assert self.process is not None and self.home is not None
        before = set(self.home.glob("tracemalloc.*.done"))
        self.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            new = set(self.home.glob("tracemalloc.*.done")) - before
            if new:
                return Path(str(new.pop())[: -len(".done")])
            time.sleep(0.1)
        raise RuntimeError("the gateway wrote no tracemalloc snapshot")

    def log_text(self) -> str:
        path = getattr(self, "log_path", None)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def _events(self, name: str) -> int:
        """How many JSON log lines of the gateway are the event ``name`` (whatever the JSON spacing)."""
        count = 0
        for line in self.log_text().splitlines():
            if line.startswith("{") and f'"{name}"' in line:
                try:
                    count += json.loads(line).get("event") == name
                except ValueError:
                    continue
        return count

    def log_tail(self, chars: int = 3000) -> str:
        path = getattr(self, "log_path", None)
        return path.read_text(errors="replace")[-chars:] if path and path.exists() else ""

    def stop(self, timeout: float = 60.0) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None
        if self._own_home and self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def __enter__(self) -> Gateway:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def snapshot_source(ref: str, into: Path) -> Path:
    """``git archive <ref> src`` of this repository into ``into``; returns the ``src`` directory."""
    root = Path(__file__).resolve().parent.parent
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(root), "archive", ref, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into / "src"


_TRACEMALLOC_HOOK = """
import signal, time, tracemalloc
tracemalloc.start({frames})


def _bench_snapshot(signum, frame):
    path = "{out}.%d" % int(time.time() * 1000)
    tracemalloc.take_snapshot().dump(path)
    open(path + ".done", "w").close()


signal.signal(signal.SIGUSR2, _bench_snapshot)
"""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus series in exposition text, over the samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def redis_answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1).ping())
    except Exception:
        return False
