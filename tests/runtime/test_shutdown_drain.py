"""INFERHUB_SHUTDOWN_DRAIN_SECONDS: after SIGTERM the API keeps serving for the drain, says `Connection: close`
and reports not ready, then stops. A proxy's kept-alive connections so end after a response instead of being
reset under a request (tests/deploy/test_rolling_update.py shows the rolling restart it makes lossless)."""

from __future__ import annotations

import signal
import time

import httpx

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess


def test_sigterm_drains_then_stops(tmp_path) -> None:
    fake = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    config = {"backends": [{"model_name": "m", "backend_type": "ollama", "endpoint_url": fake.url}]}
    hub = InferhubProcess(tmp_path, local_models=False, config=config,
                          env={"INFERHUB_SHUTDOWN_DRAIN_SECONDS": "30"})  # fmt: skip
    body = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
    try:
        with hub, httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as http:
            before = http.post("/v1/chat/completions", json=body)
            assert before.status_code == 200 and "close" not in before.headers.get("connection", "")
            assert http.get("/health/ready").status_code == 200

            hub.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 30
            while "inferhub_draining" not in {e.get("event") for e in hub.log_events()}:
                assert time.monotonic() < deadline, "no inferhub_draining event after SIGTERM"
                time.sleep(0.05)
            during = http.post("/v1/chat/completions", json=body)  # still served, on a fresh connection
            assert during.status_code == 200, during.text
            assert during.headers["connection"] == "close"
            ready = http.get("/health/ready")
            assert ready.status_code == 503 and "stopping" in ready.text

            hub.process.send_signal(signal.SIGTERM)  # a second signal ends the drain at once
            assert hub.process.wait(30) == 0
    finally:
        fake.stop()
