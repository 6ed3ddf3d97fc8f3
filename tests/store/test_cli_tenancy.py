"""The tenancy CLI: configuration errors that name no secret, and `keys rotate`, `keys update`, `tenants update`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import yaml

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess, run_cli
from support.inferhub_process import base_env

SECRETS = ("sk-PLANTED-api-key-4711", "hdr-PLANTED-header-0815", "pw-PLANTED-password-1234", "PLANTED-user")


def _bad_backends() -> dict:
    api_key, header, password, user = SECRETS
    return {
        "backends": [
            # No endpoint_url: pydantic's message would quote this whole mapping, credentials included.
            {
                "model_name": "m",
                "backend_type": "ollama",
                "api_key": api_key,
                "headers": {"X-Token": header},
                "basic_auth_username": user,
                "basic_auth_password": password,
            },
            # headers as a string: pydantic's message would quote the string.
            {"model_name": "n", "endpoint_url": "http://127.0.0.1:9", "headers": f"X-Token: {header}"},
        ]
    }


@pytest.mark.parametrize("command", [("serve",), ("keys", "list"), ("worker",)])
def test_a_malformed_backend_is_reported_without_its_credentials(tmp_path: Path, command: tuple[str, ...]):
    (tmp_path / "inferhub.yaml").write_text(yaml.safe_dump(_bad_backends()))
    result = run_cli(tmp_path, *command, env=base_env(tmp_path, INFERHUB_LOCAL_MODELS="false"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "invalid configuration" in result.stderr
    assert "backends.0.endpoint_url: Field required" in result.stderr
    assert "backends.1.headers" in result.stderr
    assert "Traceback" not in output
    for secret in SECRETS:
        assert secret not in output


def test_a_yaml_syntax_error_is_reported_without_the_line(tmp_path: Path):
    (tmp_path / "inferhub.yaml").write_text(f'backends:\n  - model_name: m\n    api_key: "{SECRETS[0]}\t: [oops\n')
    result = run_cli(tmp_path, "serve", env=base_env(tmp_path, INFERHUB_LOCAL_MODELS="false"), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "invalid configuration" in result.stderr and "line " in result.stderr
    assert SECRETS[0] not in output and "Traceback" not in output


# -- keys rotate, keys update, tenants update: against a running server ------------------------------------

MODEL = "llama3.1:8b"
ADMIN_KEY = "ih-test-admin-key-cli-tenancy"


@pytest.fixture(scope="module")
def fake() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app(models=[MODEL, "phi3:mini"])).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory, fake) -> Iterator[InferhubProcess]:
    backends = [{"model_name": m, "backend_type": "ollama", "endpoint_url": fake.url, "discover_models": False}
                for m in (MODEL, "phi3:mini")]  # fmt: skip
    env = {"INFERHUB_CACHE_REFRESH_SECONDS": "600", "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0"}
    process = InferhubProcess(tmp_path_factory.mktemp("cli-tenancy"), api_key=ADMIN_KEY, local_models=False,
                              config={"backends": backends}, env=env)  # fmt: skip
    with process:
        yield process


@pytest.fixture(scope="module")
def admin(hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def _chat(hub: InferhubProcess, key: str, model: str = MODEL) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(f"{hub.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"})


def _until(condition, what: str, timeout: float = 15.0):
    """A CLI change reaches the server through NOTIFY: wait for it (a condition, not a duration)."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return result


def _key(hub: InferhubProcess, *args: str) -> tuple[str, dict]:
    plaintext = hub.cli("keys", "create", *args).stdout.strip()
    listed = json.loads(hub.cli("keys", "list", "--json").stdout)
    record = next(k for k in listed if plaintext.startswith(k["prefix"]) and k["name"] == args[0])
    _until(lambda: _chat(hub, plaintext).status_code != 401, f"key {args[0]} to reach the server")
    return plaintext, record


def _fails(hub: InferhubProcess, *args: str) -> str:
    result = hub.cli(*args, check=False)
    assert result.returncode == 1, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


def test_keys_rotate_keeps_the_old_key_for_the_grace_period(hub, admin):
    old, record = _key(hub, "cli-rotating", "--model", "llama*", "--limit", "rpm=1000")
    before = datetime.now(UTC)
    result = hub.cli("keys", "rotate", record["prefix"], "--grace-seconds", "86400")
    new = result.stdout.strip()
    assert new.startswith("ih-") and new != old and "not shown again" in result.stderr
    _until(lambda: _chat(hub, new).status_code == 200, "the new key to work")
    assert _chat(hub, old).status_code == 200  # the grace period runs a day
    assert _chat(hub, new, "phi3:mini").status_code == 403  # same allowed models
    listed = {k["id"]: k for k in json.loads(hub.cli("keys", "list", "--json").stdout)}
    rotated = next(k for k in listed.values() if k["name"] == "cli-rotating (rotated)")
    assert (rotated["scopes"], rotated["allowed_models"], rotated["limits"]) == ("inference", ["llama*"],
                                                                                  {"rpm": 1000})  # fmt: skip
    grace_end = datetime.fromisoformat(listed[record["id"]]["expires_at"])
    assert before + timedelta(days=1) <= grace_end <= datetime.now(UTC) + timedelta(days=1)
    audit = admin.get("/api/audit-log", params={"entity_id": str(record["id"]), "actor": "cli"}).json()["data"]
    assert audit[0]["action"] == "rotate" and audit[0]["after"]["rotated_to"] == rotated["id"]

    # With no grace the old key is refused as soon as the change reaches the server.
    hub.cli("keys", "rotate", str(rotated["id"]), "--grace-seconds", "0")
    refused = _until(lambda: (r := _chat(hub, new)).status_code == 401 and r, "the rotated key to expire")
    assert refused.json()["error"]["code"] == "key_expired"
    assert "no single key" in _fails(hub, "keys", "rotate", "ih-nosuchkey")
    assert "no single key" in _fails(hub, "keys", "rotate", "99999999999999999999")


def test_keys_update_changes_limits_scopes_models_and_expiry(hub, admin):
    key, record = _key(hub, "cli-updated", "--limit", "rpm=1000", "--limit", "tpm=100000")
    assert _chat(hub, key).headers["x-ratelimit-limit-requests"] == "1000"

    out = hub.cli("keys", "update", record["prefix"], "--limit", "rpm=500", "--limit", "tpm=none").stdout
    assert '"limits": {"rpm": 500}' in out
    _until(lambda: _chat(hub, key).headers.get("x-ratelimit-limit-requests") == "500", "the new rpm limit")
    assert admin.get(f"/api/keys/{record['id']}").json()["limits"] == {"rpm": 500}

    hub.cli("keys", "update", str(record["id"]), "--model", "phi3:*")
    _until(lambda: _chat(hub, key).status_code == 403, "the allowed models to change")
    assert _chat(hub, key, "phi3:mini").status_code == 200
    hub.cli("keys", "update", str(record["id"]), "--all-models", "--clear-limits")
    _until(lambda: _chat(hub, key).status_code == 200, "every model to be allowed again")
    assert "x-ratelimit-limit-requests" not in _chat(hub, key).headers

    hub.cli("keys", "update", str(record["id"]), "--scope", "jobs")
    _until(lambda: _chat(hub, key).status_code == 403, "the scope change")
    hub.cli("keys", "update", str(record["id"]), "--scope", "inference", "--expires-at", "2001-01-01")
    expired = _until(lambda: (r := _chat(hub, key)).status_code == 401 and r, "the expiry in the past")
    assert expired.json()["error"]["code"] == "key_expired"
    hub.cli("keys", "update", str(record["id"]), "--no-expiry", "--name", "cli-renamed", "--priority", "7")
    _until(lambda: _chat(hub, key).status_code == 200, "the key to work again")
    stored = admin.get(f"/api/keys/{record['id']}").json()
    assert (stored["name"], stored["expires_at"], stored["priority"], stored["scopes"]) == (
        "cli-renamed", None, 7, ["inference"])  # fmt: skip
    in_90_days = hub.cli("keys", "update", str(record["id"]), "--expires-in-days", "90").stdout
    assert "expires_at" in in_90_days

    assert "unknown limit" in _fails(hub, "keys", "update", str(record["id"]), "--limit", "bogus=1")
    assert "NAME=NUMBER" in _fails(hub, "keys", "update", str(record["id"]), "--limit", "rpm=lots")
    assert "unknown scope" in _fails(hub, "keys", "update", str(record["id"]), "--scope", "root")
    assert "nothing to change" in _fails(hub, "keys", "update", str(record["id"]))
    assert "at most one" in _fails(hub, "keys", "update", str(record["id"]), "--no-expiry", "--expires-in-days", "1")
    assert "ISO" in _fails(hub, "keys", "update", str(record["id"]), "--expires-at", "soon")
    assert "no single key" in _fails(hub, "keys", "update", "ih-nosuchkey", "--limit", "rpm=1")


def test_tenants_update_changes_limits_and_store_payloads(hub, admin):
    hub.cli("tenants", "create", "cli-team", "--limit", "rpm=600", "--limit", "monthly_cost=100")
    tenant = next(t for t in admin.get("/api/tenants").json()["data"] if t["name"] == "cli-team")
    key, app = _key(hub, "cli-team-app", "--tenant", "cli-team")
    assert _chat(hub, key).headers["x-ratelimit-limit-requests"] == "600"

    out = hub.cli("tenants", "update", "cli-team", "--limit", "rpm=300", "--limit", "monthly_cost=none",
                  "--limit", "weight=3", "--store-payloads", "--description", "the CLI's team").stdout  # fmt: skip
    assert "updated tenant" in out
    stored = admin.get(f"/api/tenants/{tenant['id']}").json()
    assert stored["limits"] == {"rpm": 300, "weight": 3}
    assert stored["store_payloads"] is True and stored["description"] == "the CLI's team"
    _until(lambda: _chat(hub, key).headers.get("x-ratelimit-limit-requests") == "300", "the tenant's new limit")

    hub.cli("tenants", "update", str(tenant["id"]), "--clear-limits", "--no-store-payloads")
    stored = admin.get(f"/api/tenants/{tenant['id']}").json()
    assert stored["limits"] == {} and stored["store_payloads"] is False
    _until(lambda: "x-ratelimit-limit-requests" not in _chat(hub, key).headers, "the limits to be gone")
    audit = admin.get("/api/audit-log", params={"entity_type": "tenant", "entity_id": str(tenant["id"])}).json()
    assert [row["action"] for row in audit["data"]][:2] == ["update", "update"]

    assert "weight" in _fails(hub, "tenants", "update", "cli-team", "--limit", "weight=0")
    assert "unknown limit" in _fails(hub, "tenants", "update", "cli-team", "--limit", "bogus=1")
    assert "nothing to change" in _fails(hub, "tenants", "update", "cli-team")
    assert "no tenant" in _fails(hub, "tenants", "update", "no-such-team", "--limit", "rpm=1")
    assert "no tenant" in _fails(hub, "tenants", "update", "99999999999999999999", "--limit", "rpm=1")
    # A key of a tenant queues with its tenant: its own weight is refused.
    assert "tenant" in _fails(hub, "keys", "update", app["prefix"], "--limit", "weight=2")
