"""Jobs per second: one job worker versus two, on the static nginx upstream (the gateway and queue alone).

Starts its own PostgreSQL (embedded), the static upstream, an API process without a job
worker, and then 1 or 2 ``inferhub worker`` processes; submits N jobs and times until all
have succeeded. Prints one line per worker count.

    python -m bench.jobs_throughput --jobs 400
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

from bench.upstream import StaticUpstream, free_port
from inferhub.runtime.embedded_postgres import EmbeddedPostgres

KEY = "ih-bench-jobs-key-0123456789"
BIN = Path(sys.executable).parent


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise RuntimeError("timed out")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code in (200, 503)
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8, help="INFERHUB_JOB_CONCURRENCY per worker")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="inferhub-jobs-bench-"))
    pg = EmbeddedPostgres(root / "pg")
    url = pg.start()
    with StaticUpstream() as upstream:
        (root / "inferhub.yaml").write_text(yaml.safe_dump({"backends": [
            {"model_name": "bench", "backend_type": "openai", "endpoint_url": upstream.json_url,
             "max_concurrency": 64}]}))  # fmt: skip
        port = free_port()
        env = {**os.environ, "INFERHUB_HOME": str(root), "INFERHUB_CONFIG_FILE": str(root / "inferhub.yaml"),
               "INFERHUB_DATABASE_URL": url, "INFERHUB_LOCAL_MODELS": "false", "INFERHUB_API_KEY": KEY,
               "INFERHUB_PORT": str(port), "INFERHUB_HOST": "127.0.0.1", "INFERHUB_RUN_JOB_WORKER": "false",
               "INFERHUB_LOG_LEVEL": "warning", "INFERHUB_JOB_CONCURRENCY": str(args.concurrency)}  # fmt: skip
        api_url = f"http://127.0.0.1:{port}"
        log = (root / "api.log").open("wb")
        api = subprocess.Popen([str(BIN / "inferhub"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait(lambda: _ready(api_url), 120)
            headers = {"Authorization": f"Bearer {KEY}"}
            body = {"type": "chat.completions",
                    "body": {"model": "bench", "messages": [{"role": "user", "content": "hi"}]}}  # fmt: skip
            print(f"jobs={args.jobs} job_concurrency={args.concurrency} upstream=static nginx")
            for workers in (1, 2):
                worker_log = root / f"workers-{workers}.log"
                with worker_log.open("wb") as out:
                    worker_env = {**env, "INFERHUB_LOG_LEVEL": "info"}
                    procs = [
                        subprocess.Popen([str(BIN / "inferhub"), "worker"], env=worker_env, stdout=out,
                                         stderr=subprocess.STDOUT)
                        for _ in range(workers)
                    ]
                    try:
                        _wait(lambda wl=worker_log, n=workers: wl.read_text().count("job_worker_started") >= n, 120)
                        started = time.perf_counter()
                        with ThreadPoolExecutor(8) as pool:
                            list(pool.map(lambda _: httpx.post(f"{api_url}/v1/jobs", headers=headers, json=body),
                                          range(args.jobs)))  # fmt: skip
                        _wait(lambda: _drained(api_url, headers), 600)
                        elapsed = time.perf_counter() - started
                    finally:
                        for proc in procs:
                            proc.terminate()
                            proc.wait(30)
                print(f"workers={workers}  {args.jobs} jobs submitted and run in {elapsed:.2f}s  -> "
                      f"{args.jobs / elapsed:.1f} jobs/s")  # fmt: skip
        finally:
            api.terminate()
            api.wait(30)
            pg.stop()


def _drained(api_url: str, headers: dict[str, str]) -> bool:
    for status in ("queued", "running"):
        if httpx.get(f"{api_url}/v1/jobs?status={status}&limit=1", headers=headers).json()["data"]:
            return False
    return True


if __name__ == "__main__":
    main()
