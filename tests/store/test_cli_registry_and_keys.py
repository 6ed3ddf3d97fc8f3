"""`inferhub keys …` and `inferhub backends …` change a running server through PostgreSQL LISTEN/NOTIFY."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from support import InferhubProcess


def _eventually(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def fake_ollama():
    server = BackgroundServer(create_fake_ollama_app(models=["phi3:mini"])).start()
    yield server
    server.stop()


def _status(inferhub: InferhubProcess, key: str) -> int:
    return httpx.get(f"{inferhub.url}/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code


def test_created_key_works_and_revoked_key_is_refused(inferhub: InferhubProcess, unique: str) -> None:
    created = inferhub.cli("keys", "create", f"app-{unique}")
    key = created.stdout.strip()
    assert key.startswith("ih-") and len(key) > 30
    assert "not shown again" in created.stderr
    _eventually(lambda: _status(inferhub, key) == 200)

    listed = json.loads(inferhub.cli("keys", "list", "--json").stdout)
    mine = next(k for k in listed if k["name"] == f"app-{unique}")
    assert mine["prefix"] == key[:10] and mine["status"] == "active"
    assert key not in json.dumps(listed)  # only the prefix is ever shown

    inferhub.cli("keys", "revoke", mine["prefix"])
    _eventually(lambda: _status(inferhub, key) == 401, timeout=2.0)
    reply = httpx.get(f"{inferhub.url}/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert reply.json()["error"]["code"] == "key_revoked"


def test_key_is_stored_only_as_a_hash(inferhub: InferhubProcess, unique: str) -> None:
    import psycopg

    key = inferhub.cli("keys", "create", f"hash-{unique}").stdout.strip()
    socket_dir = inferhub.home / "postgres"
    with psycopg.connect(f"postgresql://postgres@/inferhub?host={socket_dir}") as conn:
        rows = conn.execute("SELECT prefix, key_hash FROM api_keys WHERE name = %s", (f"hash-{unique}",)).fetchall()
    assert len(rows) == 1
    prefix, key_hash = rows[0]
    import hashlib

    assert key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert prefix == key[:10]


def test_inference_scope_cannot_use_unknown_scopes(inferhub: InferhubProcess) -> None:
    result = inferhub.cli("keys", "create", "bad", "--scope", "superuser", check=False)
    assert result.returncode == 1 and "unknown scope" in result.stderr


def test_backend_added_by_cli_is_served_and_disable_enable_remove_work(
    inferhub: InferhubProcess, fake_ollama: BackgroundServer
) -> None:
    models = lambda: {m["id"] for m in httpx.get(f"{inferhub.url}/v1/models", headers=inferhub.headers).json()["data"]}  # noqa: E731
    added = inferhub.cli("backends", "add", "phi3:mini", fake_ollama.url, "--type", "ollama", "--max-tokens", "7")
    backend_id = added.stdout.split()[2].rstrip(":")
    _eventually(lambda: "phi3:mini" in models())

    chat = {"model": "phi3:mini:latest", "messages": [{"role": "user", "content": "ping pong"}]}
    reply = httpx.post(f"{inferhub.url}/v1/chat/completions", headers=inferhub.headers, json=chat)
    assert reply.status_code == 200, reply.text
    assert reply.json()["choices"][0]["message"]["content"] == "echo: ping pong"
    assert fake_ollama.app.state.requests[-1]["options"]["num_predict"] == 7

    # Stats are written in batches off the request path (every second by default).
    def counted() -> bool:
        rows = json.loads(inferhub.cli("backends", "list", "--json").stdout)
        row = next(r for r in rows if str(r["id"]) == backend_id)
        return row["total_requests"] >= 1 and row["avg_latency_ms"] > 0

    _eventually(counted, timeout=10)

    inferhub.cli("backends", "disable", backend_id)
    _eventually(lambda: "phi3:mini" not in models())
    reply = httpx.post(f"{inferhub.url}/v1/chat/completions", headers=inferhub.headers, json=chat)
    assert reply.status_code == 503 and "disabled" in reply.json()["error"]["message"]

    inferhub.cli("backends", "enable", backend_id)
    _eventually(lambda: "phi3:mini" in models())
    inferhub.cli("backends", "remove", backend_id)
    _eventually(lambda: "phi3:mini" not in models())
    assert httpx.post(f"{inferhub.url}/v1/chat/completions", headers=inferhub.headers, json=chat).status_code == 404


def test_backends_add_rejects_bad_input(inferhub: InferhubProcess) -> None:
    result = inferhub.cli("backends", "add", "m", "http://127.0.0.1:1", "--type", "carrier-pigeon", check=False)
    assert result.returncode == 1 and "carrier-pigeon" in result.stderr
    result = inferhub.cli("backends", "add", "m", "ftp://x", check=False)
    assert result.returncode == 1 and "http://" in result.stderr
    result = inferhub.cli("backends", "disable", "999999", check=False)
    assert result.returncode == 1 and "no backend" in result.stderr


def test_backends_add_declares_what_the_backend_serves(
    inferhub: InferhubProcess, fake_ollama: BackgroundServer
) -> None:
    added = inferhub.cli("backends", "add", "chat-only", fake_ollama.url, "--type", "ollama", "--capability", "chat")
    backend_id = added.stdout.split()[2].rstrip(":")
    rows = json.loads(inferhub.cli("backends", "list", "--json").stdout)
    assert next(r for r in rows if str(r["id"]) == backend_id)["capabilities"] == ["chat"]
    embed = {"model": "chat-only", "input": "x"}

    def refused() -> bool:
        reply = httpx.post(f"{inferhub.url}/v1/embeddings", headers=inferhub.headers, json=embed)
        return reply.status_code == 400 and reply.json()["error"]["code"] == "unsupported_operation"

    _eventually(refused)
    result = inferhub.cli("backends", "add", "m2", fake_ollama.url, "--capability", "telepathy", check=False)
    assert result.returncode == 1 and "capabilities" in result.stderr and "telepathy" in result.stderr
    inferhub.cli("backends", "remove", backend_id)
