"""Upstream credentials are write-only: sent to the upstream, encrypted at rest with the master key, never
returned, audited or logged; ``inferhub secrets rotate`` re-encrypts them under a new master key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet, InvalidToken

from fakes import BackgroundServer, create_fake_vllm_app
from support import InferhubProcess

API_KEY = "sk-PLANTED-SECRET-123456"
HEADER_SECRET = "PLANTED-HEADER-SECRET"
BASIC_PASSWORD = "PLANTED-BASIC-PASSWORD"
SECRETS = (API_KEY, HEADER_SECRET, BASIC_PASSWORD, "PLANTED")
MODEL = "deepseek-r1"


@pytest.fixture(scope="module")
def vllm() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_vllm_app(MODEL)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def master_key() -> str:
    return Fernet.generate_key().decode()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, kit, master_key) -> Iterator[InferhubProcess]:
    # Debug logging: not even the most verbose log level may show a credential.
    env = kit.fast_env(INFERHUB_SECRET_KEY=master_key, INFERHUB_LOG_LEVEL="debug")
    process = InferhubProcess(tmp_path_factory.mktemp("secrets"), api_key=kit.PLATFORM_KEY, local_models=False, env=env)
    with process:
        yield process


@pytest.fixture(scope="module")
def platform(hub, kit) -> Iterator[Any]:
    api = kit.Api(hub.url, hub.api_key)
    yield api
    api.close()


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} appears in {where}"


def database_url(hub: InferhubProcess) -> str:
    return f"postgresql://postgres@/inferhub?host={hub.home / 'postgres'}"


def upstream_chats(vllm: BackgroundServer) -> list[Any]:
    return [c for c in vllm.app.state.calls if c.path == "/v1/chat/completions"]


@pytest.fixture(scope="module")
def backend(hub, platform, vllm, kit) -> dict[str, Any]:
    response = platform.request(
        "POST",
        "/api/llm-backends",
        json={
            "model_name": MODEL,
            "backend_type": "vllm",
            "endpoint_url": vllm.url,
            "api_key": API_KEY,
            "headers": {"X-Upstream-Token": HEADER_SECRET},
            "discover_models": False,
        },
    )
    assert response.status_code == 201, response.text
    assert_no_secret(response.text, "the create response")
    body = response.json()
    assert body["has_credentials"] is True
    assert not {"api_key", "headers", "basic_auth_password", "credentials_encrypted"} & set(body)
    kit.wait_until(lambda: kit.chat(hub.url, hub.api_key, model=MODEL).status_code == 200, "the backend to serve")
    return body


def test_upstream_receives_the_credentials(hub, vllm, backend, kit):
    before = len(upstream_chats(vllm))
    response = kit.chat(hub.url, hub.api_key, "who am i", model=MODEL)
    assert response.status_code == 200, response.text
    assert_no_secret(response.text + str(response.headers), "the chat response")
    call = upstream_chats(vllm)[before]
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.headers["x-upstream-token"] == HEADER_SECRET
    assert hub.api_key not in json.dumps(call.headers)  # the client's key is not passed on
    streamed = kit.chat(hub.url, hub.api_key, "stream me", model=MODEL, stream=True)
    assert streamed.status_code == 200 and upstream_chats(vllm)[-1].headers["authorization"] == f"Bearer {API_KEY}"


def test_api_and_audit_never_show_the_credentials(platform, backend):
    for path in (
        "/api/llm-backends",
        f"/api/llm-backends/{backend['id']}",
        "/api/audit-log?limit=1000",
        f"/api/audit-log?entity_type=backend&entity_id={backend['id']}",
        "/health",
    ):
        response = platform.get(path)
        assert response.status_code == 200, response.text
        assert_no_secret(response.text, path)
    listed = next(b for b in platform.ok("GET", "/api/llm-backends")["data"] if b["id"] == backend["id"])
    assert listed["has_credentials"] is True
    audit = platform.ok("GET", "/api/audit-log", params={"entity_type": "backend", "entity_id": str(backend["id"])})
    assert audit["data"][-1]["action"] == "create" and audit["data"][-1]["after"]["has_credentials"] is True


def test_changing_credentials_stays_write_only(hub, platform, vllm, backend, kit):
    patched = platform.request(
        "PATCH",
        f"/api/llm-backends/{backend['id']}",
        json={"basic_auth_username": "svc", "basic_auth_password": BASIC_PASSWORD, "weight": 2},
    )
    assert patched.status_code == 200, patched.text
    assert_no_secret(patched.text, "the patch response")
    assert patched.json()["has_credentials"] is True and patched.json()["weight"] == 2

    before = len(upstream_chats(vllm))
    assert kit.chat(hub.url, hub.api_key, model=MODEL).status_code == 200
    headers = upstream_chats(vllm)[before].headers
    # The api_key still wins over basic auth for Authorization; the custom header is still sent.
    assert headers["authorization"] == f"Bearer {API_KEY}" and headers["x-upstream-token"] == HEADER_SECRET
    audit = platform.get("/api/audit-log", params={"entity_type": "backend", "limit": 1000})
    assert_no_secret(audit.text, "the audit log after a credential change")


def test_upstream_errors_do_not_leak_the_credentials(hub, vllm, backend, kit):
    vllm.app.state.fail_mode = "500"
    try:
        for stream in (False, True):
            response = kit.chat(hub.url, hub.api_key, "fail please", model=MODEL, stream=stream)
            assert response.status_code >= 500 or "error" in response.text, response.text
            assert_no_secret(response.text + str(response.headers), "an upstream error response")
    finally:
        vllm.app.state.fail_mode = None
    vllm.app.state.fail_mode = "garbage"
    try:
        response = kit.chat(hub.url, hub.api_key, "garbage please", model=MODEL)
        assert_no_secret(response.text, "a garbage upstream response")
    finally:
        vllm.app.state.fail_mode = None


def test_the_server_log_never_shows_the_credentials(hub, backend):
    output = hub.output()
    assert "llm_request" in output or "routing_llm_request" in output  # the log did record the traffic
    assert_no_secret(output, "the server log")


def test_the_database_holds_only_ciphertext(hub, backend, master_key):
    with psycopg.connect(database_url(hub)) as conn:
        (stored,) = conn.execute(
            "SELECT credentials_encrypted FROM llm_backends WHERE id = %s", (backend["id"],)
        ).fetchone()
        (row,) = conn.execute(
            "SELECT row_to_json(b)::text FROM llm_backends b WHERE id = %s", (backend["id"],)
        ).fetchone()
        (audit,) = conn.execute(
            "SELECT coalesce(string_agg(row_to_json(a)::text, ' '), '') FROM config_audit_log a"
        ).fetchone()
    assert stored and stored.startswith("gAAAA")  # a Fernet token
    assert_no_secret(stored, "llm_backends.credentials_encrypted")
    assert_no_secret(row, "the llm_backends row")
    assert_no_secret(audit, "config_audit_log")
    decrypted = json.loads(Fernet(master_key.encode()).decrypt(stored.encode()))
    assert decrypted["api_key"] == API_KEY and decrypted["headers"] == {"X-Upstream-Token": HEADER_SECRET}
    assert decrypted["basic_auth_password"] == BASIC_PASSWORD  # merged by the PATCH


def test_rotating_the_master_key(hub, vllm, backend, master_key, kit):
    new_key = Fernet.generate_key().decode()
    hub.stop()
    result = hub.cli("secrets", "rotate", "--new-key", new_key)
    assert "re-encrypted 1 credential" in result.stdout, result.stdout + result.stderr
    assert_no_secret(result.stdout + result.stderr, "the rotate command's output")
    # Restart with only the new key: the upstream still gets the right credentials.
    hub.env["INFERHUB_SECRET_KEY"] = new_key
    hub.start()
    kit.wait_until(lambda: kit.chat(hub.url, hub.api_key, model=MODEL).status_code == 200, "the rotated backend")
    before = len(upstream_chats(vllm))
    assert kit.chat(hub.url, hub.api_key, "after rotation", model=MODEL).status_code == 200
    headers = upstream_chats(vllm)[before].headers
    assert headers["x-upstream-token"] == HEADER_SECRET
    assert headers["authorization"] == f"Bearer {API_KEY}"
    with psycopg.connect(database_url(hub)) as conn:
        (stored,) = conn.execute(
            "SELECT credentials_encrypted FROM llm_backends WHERE id = %s", (backend["id"],)
        ).fetchone()
    assert json.loads(Fernet(new_key.encode()).decrypt(stored.encode()))["api_key"] == API_KEY
    with pytest.raises(InvalidToken):  # the old key no longer decrypts it
        Fernet(master_key.encode()).decrypt(stored.encode())
    assert_no_secret(hub.output(), "the server log after the rotation")
    assert httpx.get(f"{hub.url}/health", headers=hub.headers, timeout=10).json()["backends"][0]["status"] == "healthy"
