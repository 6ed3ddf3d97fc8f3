"""Collections belong to a tenant: another tenant cannot see, search, change or answer from them.

Tenant B asking for tenant A's collection gets exactly the 404 a name that does not exist gets, on every
route (list, get, documents, search, delete, /v1/rag/query, the chat extension), and nothing it does changes
A's collection. The same name can exist in both tenants, each with its own documents. Keys without a tenant
are namespaces of their own the same way; two keys of one tenant share the tenant's collections.
"""

from __future__ import annotations

import pytest

NAME = "handbook"
A_TEXT = "Tenant A's secret: the vault combination is changed every ninety days by the night guard."
B_TEXT = "Tenant B's garden: tomatoes are planted along the south wall in early May."


@pytest.fixture(scope="module")
def tenants(inferhub, ragkit):
    """Two tenants with a rag key each; A has a collection NAME with one document."""
    clients = {}
    for side in ("a", "b"):
        tenant = ragkit.new_tenant(inferhub)
        clients[side] = ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag", "inference", tenant=tenant))
        clients[side].tenant = tenant
    a = clients["a"]
    a.create_collection(NAME, description="A's handbook")
    a.doc = a.add_ready(NAME, A_TEXT, title="Vault", metadata={"owner": "a"})
    yield clients
    for client in clients.values():
        client.close()


def _not_found(ragkit, response) -> None:
    error = ragkit.assert_openai_error(response, 404)
    assert error["code"] in ("collection_not_found", "document_not_found"), error
    assert "vault" not in response.text.lower()


def _a_is_intact(a) -> None:
    collection = a.http.get(f"/v1/collections/{NAME}").json()
    assert collection["document_count"] == 1 and collection["description"] == "A's handbook"
    top = a.search(NAME, "vault combination")[0]
    assert top["document_id"] == a.doc["id"] and top["text"] == A_TEXT


def test_tenant_b_cannot_reach_tenant_a_collection(inferhub, tenants, ragkit) -> None:
    a, b = tenants["a"], tenants["b"]
    assert NAME not in {c["name"] for c in b.http.get("/v1/collections").json()["data"]}
    doc = a.doc["id"]
    attempts = {
        "get": b.http.get(f"/v1/collections/{NAME}"),
        "list documents": b.http.get(f"/v1/collections/{NAME}/documents"),
        "get document": b.http.get(f"/v1/collections/{NAME}/documents/{doc}"),
        "search": b.search_raw(NAME, query="vault combination"),
        "add text": b.add_text(NAME, "B was here."),
        "upload": b.upload(NAME, "b.txt", b"B was here too.", "text/plain"),
        "replace A's document": b.add_text(NAME, "B overwrote it.", replace_document_id=doc),
        "delete document": b.http.delete(f"/v1/collections/{NAME}/documents/{doc}"),
        "rag query": b.http.post("/v1/rag/query", json={"collections": [NAME], "query": "vault combination"}),
        "rag query stream": b.http.post(
            "/v1/rag/query", json={"collections": [NAME], "query": "vault combination", "stream": True}
        ),
        "chat extension": b.http.post(
            "/v1/chat/completions",
            json={
                "model": "smollm2",
                "collections": [NAME],
                "max_tokens": 8,
                "messages": [{"role": "user", "content": "What is the vault combination policy?"}],
            },
        ),
        "delete collection": b.http.delete(f"/v1/collections/{NAME}"),
    }
    for what, response in attempts.items():
        assert response.status_code == 404, (what, response.text)
        _not_found(ragkit, response)
    # Exactly what a collection that exists nowhere answers.
    nowhere = b.http.get("/v1/collections/no-such-collection-anywhere")
    assert nowhere.status_code == attempts["get"].status_code
    assert nowhere.json()["error"]["code"] == attempts["get"].json()["error"]["code"]
    _a_is_intact(a)


def test_the_same_name_in_two_tenants_is_two_collections(tenants) -> None:
    a, b = tenants["a"], tenants["b"]
    created = b.create_collection(NAME, description="B's handbook")
    assert created["document_count"] == 0 and created["name"] == NAME
    b_doc = b.add_ready(NAME, B_TEXT, title="Garden")
    assert b.http.get(f"/v1/collections/{NAME}").json()["id"] != a.http.get(f"/v1/collections/{NAME}").json()["id"]

    for client, own, other in ((a, a.doc["id"], b_doc["id"]), (b, b_doc["id"], a.doc["id"])):
        for query in ("vault combination night guard", "tomatoes south wall"):
            hits = client.search(NAME, query, top_k=50)
            assert {h["document_id"] for h in hits} == {own}, (query, hits)
        assert [d["id"] for d in client.documents(NAME)] == [own]
        assert client.http.get(f"/v1/collections/{NAME}/documents/{other}").status_code == 404

    # B's answer from its own "handbook" cites only B's document.
    answer = b.http.post(
        "/v1/rag/query", json={"collections": [NAME], "query": "vault combination ninety days", "max_tokens": 8}
    )
    assert answer.status_code == 200, answer.text
    assert {c["document_id"] for c in answer.json()["citations"]} <= {b_doc["id"]}
    assert "ninety" not in str(answer.json()["citations"])

    # Deleting B's collection leaves A's alone.
    assert b.http.delete(f"/v1/collections/{NAME}").status_code == 200
    assert b.http.get(f"/v1/collections/{NAME}").status_code == 404
    _a_is_intact(a)


def test_keys_of_one_tenant_share_its_collections(inferhub, tenants, ragkit) -> None:
    a = tenants["a"]
    with ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag", tenant=a.tenant)) as colleague:
        assert colleague.search(NAME, "vault combination")[0]["document_id"] == a.doc["id"]
        assert NAME in {c["name"] for c in colleague.http.get("/v1/collections").json()["data"]}


def test_keys_without_a_tenant_are_separate_namespaces(inferhub, ragkit) -> None:
    with (
        ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag")) as first,
        ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "rag")) as second,
    ):
        name = first.create_collection()["name"]
        first.add_ready(name, "The first key's notes mention a purple umbrella.")
        _not_found(ragkit, second.http.get(f"/v1/collections/{name}"))
        _not_found(ragkit, second.search_raw(name, query="purple umbrella"))
        assert second.create_collection(name)["document_count"] == 0
        assert second.search(name, "purple umbrella") == []
        assert first.search(name, "purple umbrella")[0]["text"].startswith("The first key's notes")
