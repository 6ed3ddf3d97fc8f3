"""``inferhub backup`` of a populated install, ``inferhub restore`` into an empty external PostgreSQL, and a
server on the restored database that has everything: tenants, keys (the old plaintext keys still work),
backends whose stored credentials still decrypt, routes and aliases, usage, jobs and files, and the server's
``inferhub.yaml`` and env file (saved beside the dump, 0600, put back by the restore).
"""

from __future__ import annotations

import stat
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.runtime.embedded_postgres import EmbeddedPostgres
from inferhub.store import migrate
from support import InferhubProcess, run_cli
from support.inferhub_process import base_env

MASTER_KEY = Fernet.generate_key().decode()
UPSTREAM_KEY = "sk-upstream-PLANTED-123456"
MODEL = "llama3.1:8b"
EMBEDDER = "nomic-embed-text"
DOCUMENT = "The VPN password of the Lisbon office rotates every ninety days."
CONFIG_YAML = "usage_retention_days: 400\n"
ENV_FILE = f"INFERHUB_SECRET_KEY={MASTER_KEY}\nINFERHUB_DISCOVERY_INTERVAL_SECONDS=45\n"
FILE_CONTENT = (
    b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", '
    b'"body": {"model": "llama3.1:8b", "messages": [{"role": "user", "content": "hi"}]}}\n'
)


def _env(**extra: str) -> dict[str, str]:
    return {
        "INFERHUB_SECRET_KEY": MASTER_KEY,
        "INFERHUB_USAGE_FLUSH_SECONDS": "0.2",
        "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0",
        "INFERHUB_CACHE_REFRESH_SECONDS": "600",
        **extra,
    }


def _wait(condition: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
    return result


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json() if response.content else None


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _chat(url: str, key: str, text: str) -> httpx.Response:
    body = {"model": "default", "messages": [{"role": "user", "content": text}]}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=_bearer(key), timeout=30)


def _upstream_auth(fake: BackgroundServer) -> list[str | None]:
    return [c.headers.get("authorization") for c in fake.app.state.calls if c.path == "/api/chat"]


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app(models=[MODEL, EMBEDDER])).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory, engine: BackgroundServer) -> Iterator[dict[str, Any]]:
    """A populated install on the embedded PostgreSQL; yields what it holds, as its API reports it."""
    home = tmp_path_factory.mktemp("ops-original")
    (home / "inferhub.yaml").write_text(CONFIG_YAML)  # INFERHUB_CONFIG_FILE of the process
    (home / ".env").write_text(ENV_FILE)  # the env file the settings read (the process runs in its home)
    process = InferhubProcess(home, local_models=False, env=_env())
    with process, httpx.Client(base_url=process.url, headers=process.headers, timeout=30) as admin:
        backend = _ok(
            admin.post(
                "/api/llm-backends",
                json={
                    "model_name": MODEL,
                    "backend_type": "ollama",
                    "endpoint_url": engine.url,
                    "api_key": UPSTREAM_KEY,
                    "discover_models": False,
                },
            ),
            201,
        )
        _ok(
            admin.post(
                "/api/llm-backends",
                json={
                    "model_name": EMBEDDER,
                    "backend_type": "ollama",
                    "endpoint_url": engine.url,
                    "discover_models": False,
                },
            ),
            201,
        )
        _ok(admin.put(f"/api/model-routes/{MODEL}", json={"strategy": "priority", "fallbacks": []}))
        _ok(admin.put("/api/model-aliases/default", json={"model": MODEL}))
        tenant = _ok(admin.post("/api/tenants", json={"name": "billing-team", "limits": {"rpm": 600}}), 201)
        app_key = _ok(
            admin.post(
                f"/api/tenants/{tenant['id']}/keys",
                json={"name": "invoice-bot", "scopes": ["inference", "jobs", "rag"]},
            ),
            201,
        )["key"]
        cli_key = process.cli("keys", "create", "ops-cli").stdout.strip()
        _wait(lambda: httpx.get(f"{process.url}/v1/models", headers=_bearer(app_key)).status_code == 200, "the key")
        _wait(lambda: httpx.get(f"{process.url}/v1/models", headers=_bearer(cli_key)).status_code == 200, "CLI key")

        for i in range(3):
            _ok(_chat(process.url, app_key, f"question {i}"))
        assert _upstream_auth(engine)[-1] == f"Bearer {UPSTREAM_KEY}"

        job = _ok(
            httpx.post(
                f"{process.url}/v1/jobs",
                headers=_bearer(app_key),
                json={
                    "type": "chat.completions",
                    "body": {"model": MODEL, "messages": [{"role": "user", "content": "job"}]},
                },
            ),
            202,
        )
        job = _wait(
            lambda: (
                (j := _ok(httpx.get(f"{process.url}/v1/jobs/{job['id']}", headers=_bearer(app_key))))["status"]
                == "succeeded"
                and j
            ),
            "the job to run",
        )
        uploaded = _ok(
            httpx.post(
                f"{process.url}/v1/files",
                headers=_bearer(app_key),
                data={"purpose": "batch"},
                files={"file": ("input.jsonl", FILE_CONTENT, "application/jsonl")},
            )
        )

        # RAG: a collection with one document, ingested by the job worker into pgvector chunks.
        rag = httpx.Client(base_url=f"{process.url}/v1", headers=_bearer(app_key), timeout=30)
        _ok(rag.post("/collections", json={"name": "handbook", "embedding_model": EMBEDDER}), 201)
        document = _ok(rag.post("/collections/handbook/documents", json={"text": DOCUMENT, "title": "vpn"}), 202)
        _wait(
            lambda: _ok(rag.get(f"/collections/handbook/documents/{document['id']}"))["status"] == "ready",
            "the document to be ingested",
        )
        hits = _ok(rag.post("/collections/handbook/search", json={"query": "VPN password", "mode": "vector"}))["data"]
        assert [h["text"] for h in hits] == [DOCUMENT]
        rag.close()

        def usage() -> list[dict[str, Any]]:
            return _ok(admin.get("/api/usage", params={"group_by": "tenant"}))["data"]

        def settled() -> list[dict[str, Any]] | None:
            first = usage()
            time.sleep(1.0)  # > INFERHUB_USAGE_FLUSH_SECONDS: nothing still in flight
            return first if first == usage() and any(r["tenant"] == tenant["id"] for r in first) else None

        settled_usage = _wait(settled, "usage records")
        yield {
            "process": process,
            "app_key": app_key,
            "cli_key": cli_key,
            "backend": backend,
            "tenant": tenant,
            "tenants": _ok(admin.get("/api/tenants"))["data"],
            "keys": _ok(admin.get(f"/api/tenants/{tenant['id']}/keys"))["data"],
            "routes": _ok(admin.get("/api/model-routes")),
            "aliases": _ok(admin.get("/api/model-aliases"))["data"],
            "usage": settled_usage,
            "job": job,
            "document": document,
            "hits": hits,
            "file": uploaded,
        }


@pytest.fixture(scope="module")
def dump(original: dict[str, Any]) -> Path:
    """``inferhub backup`` with the default file name, taken while the original server runs."""
    process: InferhubProcess = original["process"]
    result = process.cli("backup")
    files = sorted(process.home.glob("inferhub-backup-*.dump"))
    assert len(files) == 1, result.stdout
    assert "master key" in result.stdout.lower() and "secret.key" in result.stdout
    assert "configuration files written" in result.stdout
    assert "sets INFERHUB_SECRET_KEY" in result.stdout  # the env file holds the master key: said so
    assert httpx.get(f"{process.url}/health", timeout=10).status_code == 200  # the running server is untouched
    return files[0]


@pytest.fixture(scope="module")
def empty_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pg = EmbeddedPostgres(tmp_path_factory.mktemp("ops-target") / "postgres")
    yield pg.start()
    pg.stop()


@pytest.fixture(scope="module")
def restored(tmp_path_factory, original, dump, empty_database) -> Iterator[InferhubProcess]:
    original["process"].stop()
    home = tmp_path_factory.mktemp("ops-restored")
    env = base_env(home, INFERHUB_DATABASE_URL=empty_database)
    first = run_cli(home, "restore", str(dump), env=env)  # an empty target needs no --yes
    assert "restored:" in first.stdout and "tenants 1" in first.stdout, first.stdout
    refused = run_cli(home, "restore", str(dump), env=env, check=False)
    assert refused.returncode == 1 and "--yes" in refused.stderr, refused.stderr
    run_cli(home, "restore", str(dump), "--yes", env=env)  # over its own data: --clean makes it idempotent
    process = InferhubProcess(home, local_models=False, env=_env(INFERHUB_DATABASE_URL=empty_database))
    with process:
        yield process


def test_the_backup_file(dump: Path) -> None:
    assert dump.stat().st_size > 0
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600  # keys, documents and usage are inside
    assert dump.name.startswith("inferhub-backup-") and dump.name.endswith("Z.dump")
    assert dump.read_bytes()[:5] == b"PGDMP"  # pg_dump's custom format
    companion = dump.with_name(dump.name.removesuffix(".dump") + ".config.tar")
    assert stat.S_IMODE(companion.stat().st_mode) == 0o600  # the env file may hold the master key
    with tarfile.open(companion) as archive:
        assert sorted(archive.getnames()) == ["inferhub.env", "inferhub.yaml"]


def test_inferhub_yaml_and_the_env_file_are_restored(restored: InferhubProcess) -> None:
    for name, content in (("inferhub.yaml", CONFIG_YAML), (".env", ENV_FILE)):
        path = restored.home / name
        assert path.read_text() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_configuration_tenants_and_keys_survive(restored: InferhubProcess, original: dict[str, Any]) -> None:
    with httpx.Client(base_url=restored.url, headers=restored.headers, timeout=30) as admin:
        assert _ok(admin.get("/api/tenants"))["data"] == original["tenants"]
        assert _ok(admin.get(f"/api/tenants/{original['tenant']['id']}/keys"))["data"] == original["keys"]
        assert _ok(admin.get("/api/model-routes")) == original["routes"]
        assert _ok(admin.get("/api/model-aliases"))["data"] == original["aliases"] == {"default": MODEL}
        backends = _ok(admin.get("/api/llm-backends"))["data"]
    [backend] = [b for b in backends if b["id"] == original["backend"]["id"]]
    assert len(backends) == 2  # the chat model's and the embedder's
    for field in ("id", "model_name", "backend_type", "endpoint_url", "discover_models", "has_credentials"):
        assert backend[field] == original["backend"][field], field
    assert backend["has_credentials"] is True
    # The old plaintext keys still authenticate: only their hashes were stored, and those came back.
    for key in (original["app_key"], original["cli_key"]):
        assert httpx.get(f"{restored.url}/v1/models", headers=_bearer(key)).status_code == 200


def test_usage_jobs_and_files_survive(restored: InferhubProcess, original: dict[str, Any]) -> None:
    usage = httpx.get(f"{restored.url}/api/usage", params={"group_by": "tenant"}, headers=restored.headers).json()
    assert usage["data"] == original["usage"]
    key = original["app_key"]
    job = _ok(httpx.get(f"{restored.url}/v1/jobs/{original['job']['id']}", headers=_bearer(key)))
    assert job["status"] == "succeeded"
    assert job["result"] == original["job"]["result"] and job["usage"] == original["job"]["usage"]
    file_id = original["file"]["id"]
    assert _ok(httpx.get(f"{restored.url}/v1/files/{file_id}", headers=_bearer(key))) == original["file"]
    content = httpx.get(f"{restored.url}/v1/files/{file_id}/content", headers=_bearer(key))
    assert content.status_code == 200 and content.content == FILE_CONTENT


def test_stored_credentials_still_decrypt(restored: InferhubProcess, original: dict[str, Any], engine) -> None:
    before = len(_upstream_auth(engine))
    reply = _ok(_chat(restored.url, original["app_key"], "after the restore"))
    assert reply["choices"][0]["message"]["content"] == "echo: after the restore"
    calls = _upstream_auth(engine)
    assert len(calls) == before + 1 and calls[-1] == f"Bearer {UPSTREAM_KEY}"


def test_rag_documents_and_their_vectors_survive(restored: InferhubProcess, original: dict[str, Any]) -> None:
    with httpx.Client(base_url=f"{restored.url}/v1", headers=_bearer(original["app_key"]), timeout=30) as rag:
        document = _ok(rag.get(f"/collections/handbook/documents/{original['document']['id']}"))
        assert document["status"] == "ready" and document["title"] == "vpn"
        hits = _ok(rag.post("/collections/handbook/search", json={"query": "VPN password", "mode": "vector"}))["data"]
    assert hits == original["hits"]


def test_restore_refuses_what_is_not_a_backup(tmp_path: Path, empty_database: str, restored) -> None:
    bogus = tmp_path / "notes.dump"
    bogus.write_text("not a dump")
    result = run_cli(
        tmp_path,
        "restore",
        str(bogus),
        "--yes",
        env=base_env(tmp_path, INFERHUB_DATABASE_URL=empty_database),
        check=False,
    )
    assert result.returncode == 1 and "not a pg_dump custom-format archive" in result.stderr
    missing = run_cli(
        tmp_path,
        "restore",
        str(tmp_path / "nope.dump"),
        env=base_env(tmp_path, INFERHUB_DATABASE_URL=empty_database),
        check=False,
    )
    assert missing.returncode == 1 and "no backup file" in missing.stderr


def test_an_older_backup_replaces_a_newer_database(tmp_path: Path) -> None:
    """A backup made at an older migration restores over a database at the latest one (tables the older
    schema lacks are dropped first), then is migrated to the latest revision."""
    pg = EmbeddedPostgres(tmp_path / "postgres")
    current = pg.start()
    try:
        older = current.replace("/inferhub?", "/older?")
        with psycopg.connect(current, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "older"')
        migrate.upgrade(older, "0004")
        with psycopg.connect(older, autocommit=True) as conn:
            conn.execute("INSERT INTO tenants (name) VALUES ('from-the-backup')")
        archive = tmp_path / "older.dump"
        run_cli(tmp_path, "backup", "--output", str(archive), env=base_env(tmp_path, INFERHUB_DATABASE_URL=older))

        migrate.upgrade(current)
        with psycopg.connect(current, autocommit=True) as conn:
            conn.execute("INSERT INTO tenants (name) VALUES ('written-later')")
        env = base_env(tmp_path, INFERHUB_DATABASE_URL=current)
        result = run_cli(tmp_path, "restore", str(archive), "--yes", env=env)
        assert "revision 0004" in result.stdout
        assert migrate.current_revision(current) == migrate.head_revision(current)
        with psycopg.connect(current) as conn:
            assert conn.execute("SELECT name FROM tenants").fetchall() == [("from-the-backup",)]
    finally:
        pg.stop()
