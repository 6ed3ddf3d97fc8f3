"""A real Prometheus scrapes a running Inferhub: the counters it stores match the traffic sent.

Prometheus is Debian's binary (package `prometheus`, installed by scripts/ensure-tools.sh), started on
a free loopback port with a temporary configuration and storage, scraping every second.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from support import InferhubProcess, free_port

CHAT_SERIES = {"endpoint": "/v1/chat/completions", "status": "200"}
REQUESTS_SENT = 3


class Prometheus:
    def __init__(self, binary: str, workdir: Path, target: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "inferhub", "static_configs": [{"targets": [target]}]}],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            cwd=workdir, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"prometheus was not ready within {timeout}s:\n{self.log()}")

    def query(self, promql: str) -> list[dict]:
        reply = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = reply.json()
        assert reply.status_code == 200 and body["status"] == "success", f"{promql}: {body}"
        return body["data"]["result"]

    def value(self, promql: str, labels: dict[str, str]) -> float | None:
        for sample in self.query(promql):
            if labels.items() <= sample["metric"].items():
                return float(sample["value"][1])
        return None

    def wait_for(self, promql: str, labels: dict[str, str], at_least: float, timeout: float = 60.0) -> float | None:
        """Poll until the series reaches ``at_least``; the last value seen either way."""
        value = None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.value(promql, labels)
            if value is not None and value >= at_least:
                break
            time.sleep(0.5)
        return value

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


@pytest.fixture(scope="module")
def prometheus_binary(bundle) -> str:
    return bundle.tool("prometheus")  # skips before the inferhub fixture starts a server for nothing


@pytest.fixture(scope="module")
def prometheus(
    prometheus_binary: str, inferhub: InferhubProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    target = inferhub.url.removeprefix("http://")
    server = Prometheus(prometheus_binary, tmp_path_factory.mktemp("prometheus"), target)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def scraped_counter(inferhub: InferhubProcess, labels: dict[str, str]) -> float:
    """The gateway's own llm_requests_total for the series, read straight from /metrics."""
    text = httpx.get(f"{inferhub.url}/metrics", timeout=30).text
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^llm_requests_total\{{{re.escape(label_text)}\}} (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def test_prometheus_stores_the_chat_requests_sent_through_the_gateway(
    prometheus: Prometheus, inferhub: InferhubProcess, openai_client: openai.OpenAI
) -> None:
    assert prometheus.wait_for('up{job="inferhub"}', {}, at_least=1) == 1, prometheus.log()
    before = scraped_counter(inferhub, CHAT_SERIES)  # earlier tests share this server

    for i in range(REQUESTS_SENT):
        reply = openai_client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": f"Count to {i + 2}."}], max_tokens=3
        )
        assert reply.choices[0].message is not None

    value = prometheus.wait_for("llm_requests_total", CHAT_SERIES, at_least=before + REQUESTS_SENT)
    assert value is not None and value >= before + REQUESTS_SENT, (
        f"Prometheus has llm_requests_total{CHAT_SERIES} = {value}, expected >= {before + REQUESTS_SENT}"
    )
    tokens = prometheus.value('sum by (model) (llm_tokens_generated_total{model="smollm2"})', {"model": "smollm2"})
    assert tokens is not None and tokens >= REQUESTS_SENT


def test_every_alert_and_dashboard_query_evaluates_on_prometheus(bundle, prometheus: Prometheus) -> None:
    prometheus.wait_for('up{job="inferhub"}', {}, at_least=1)
    failures = {}
    for query in bundle.queries():
        try:
            prometheus.query(query.expr)
        except AssertionError as error:
            failures[query.where] = str(error)
    assert failures == {}
