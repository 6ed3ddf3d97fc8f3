"""Without pgvector, RAG says so and nothing else breaks.

Runs Inferhub against the machine's own PostgreSQL (127.0.0.1:5432, user postgres, trust auth), in a fresh
database made for the test and dropped after it. That server must not have pgvector; the test is skipped,
with the reason, when it is not reachable or when it has the extension. No embedded models: a fake TEI
serves the embedding model (bge-m3) and a fake Ollama the chat model.

Migrations run through (migration 0006 leaves the ``chunks`` table out), creating a collection answers 501
with a message naming the 'vector' extension, and chat, embeddings and keys work as usual.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from fakes import BackgroundServer, create_fake_ollama_app, create_fake_tei_app
from support import InferhubProcess

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
CHAT_MODEL = "llama3.1:8b"


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        pytest.skip(f"the machine's PostgreSQL on 127.0.0.1:5432 (user postgres) is not reachable: {exc}")
    with admin:
        if admin.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone():
            pytest.skip("the PostgreSQL on 127.0.0.1:5432 has pgvector: this test needs a server without it")
        name = f"inferhub_no_pgvector_{uuid.uuid4().hex[:8]}"
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def hub(tmp_path_factory, database: str) -> Iterator[InferhubProcess]:
    tei = BackgroundServer(create_fake_tei_app(dim=16, model_id="BAAI/bge-m3")).start()
    ollama = BackgroundServer(create_fake_ollama_app(models=[CHAT_MODEL])).start()
    config = {
        "backends": [
            {"model_name": "bge-m3", "backend_type": "tei", "endpoint_url": tei.url},
            {"model_name": CHAT_MODEL, "backend_type": "ollama", "endpoint_url": ollama.url, "discover_models": False},
        ]
    }
    process = InferhubProcess(
        tmp_path_factory.mktemp("no-pgvector"),
        local_models=False,
        config=config,
        env={"INFERHUB_DATABASE_URL": database},
    )
    try:
        with process:
            yield process
    finally:
        tei.stop()
        ollama.stop()


def test_creating_a_collection_is_501_naming_the_vector_extension(hub: InferhubProcess, ragkit) -> None:
    http = httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30)
    for _ in range(2):  # and the failed attempt left nothing behind
        response = http.post("/v1/collections", json={"name": "handbook", "embedding_model": "bge-m3"})
        error = ragkit.assert_openai_error(response, 501, "pgvector_missing")
        assert "'vector'" in error["message"] and "pgvector" in error["message"]
        assert "CREATE EXTENSION vector" in error["message"]
    assert http.get("/v1/collections").json() == {"object": "list", "data": []}
    ragkit.assert_openai_error(http.get("/v1/collections/handbook"), 404, "collection_not_found")
    ragkit.assert_openai_error(http.post("/v1/collections/handbook/search", json={"query": "x"}), 404)
    ragkit.assert_openai_error(
        http.post("/v1/rag/query", json={"collections": ["handbook"], "query": "x", "model": CHAT_MODEL}), 404
    )


def test_chat_embeddings_and_keys_still_work(hub: InferhubProcess, ragkit) -> None:
    key = ragkit.new_key(hub, "inference", "rag", name="no-pgvector-app")
    assert "no-pgvector-app" in hub.cli("keys", "list", "--json").stdout
    http = httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    chat = http.post(
        "/v1/chat/completions", json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hello"}]}
    )
    assert chat.status_code == 200, chat.text
    assert chat.json()["choices"][0]["message"]["content"]
    embeddings = http.post("/v1/embeddings", json={"model": "bge-m3", "input": ["one", "two"]})
    assert embeddings.status_code == 200, embeddings.text
    assert [len(d["embedding"]) for d in embeddings.json()["data"]] == [16, 16]
    # The new key is a RAG key too, and gets the same clear answer.
    ragkit.assert_openai_error(
        http.post("/v1/collections", json={"name": "mine", "embedding_model": "bge-m3"}), 501, "pgvector_missing"
    )
    assert hub.health()["components"]["database"]["status"] == "healthy"
