"""INFERHUB_FORWARDED_ALLOW_IPS: X-Forwarded-Proto and X-Forwarded-For count only from the listed proxies.

Behind the shipped proxies (nginx, HAProxy, Traefik, an ingress controller) TLS ends at the proxy, so
Inferhub sees plain HTTP from the proxy's address. From a trusted proxy, X-Forwarded-Proto: https makes
the admin session cookie Secure and X-Forwarded-For becomes the client IP in the request log; from
anyone else both headers are ignored. The "proxy" here is a client bound to 127.0.0.2 (all of 127/8 is
loopback on Linux), the one address the setting trusts; 127.0.0.1, trusted by default, is not.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess

PROXY = "127.0.0.2"
ADMIN_PASSWORD = "forwarded-headers-admin-password"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferhubProcess]:
    engine = BackgroundServer(create_fake_ollama_app(models=["m"])).start()
    config = {"backends": [{"model_name": "m", "backend_type": "ollama", "endpoint_url": engine.url}]}
    env = {"INFERHUB_FORWARDED_ALLOW_IPS": PROXY, "INFERHUB_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD}
    process = InferhubProcess(tmp_path_factory.mktemp("forwarded"), local_models=False, config=config, env=env)
    try:
        with process:
            yield process
    finally:
        engine.stop()


def client_from(hub: InferhubProcess, source: str) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=hub.url, transport=transport, timeout=30)


def login_cookie(hub: InferhubProcess, source: str) -> str:
    with client_from(hub, source) as client:
        reply = client.post("/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD},
                            headers={"X-Forwarded-Proto": "https"})  # fmt: skip
    assert reply.status_code == 200, reply.text
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith("inferhub_session="), cookie
    return cookie.lower()


def test_secure_session_cookie_only_behind_a_trusted_proxy(hub: InferhubProcess) -> None:
    assert "; secure" in login_cookie(hub, PROXY)
    assert "; secure" not in login_cookie(hub, "127.0.0.1")


def test_client_ip_from_x_forwarded_for_only_from_a_trusted_proxy(hub: InferhubProcess) -> None:
    for source, forwarded_for in ((PROXY, "203.0.113.7"), ("127.0.0.1", "198.51.100.9")):
        with client_from(hub, source) as client:
            reply = client.post("/v1/chat/completions", json=CHAT,
                                headers={**hub.headers, "X-Forwarded-For": forwarded_for})  # fmt: skip
            assert reply.status_code == 200, reply.text

    def logged_ips() -> set[str]:
        rows = httpx.get(f"{hub.url}/api/request-log?limit=1000", headers=hub.headers, timeout=30).json()["data"]
        return {row["client_ip"] for row in rows if row["endpoint"] == "/v1/chat/completions"}

    deadline = time.monotonic() + 60  # usage rows are written in batches, off the request path
    while len(ips := logged_ips()) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ips == {"203.0.113.7", "127.0.0.1"}, ips
