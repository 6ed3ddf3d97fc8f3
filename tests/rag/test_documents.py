"""Documents: every supported format is ingested and searchable with its structure (section, page) kept;
unsupported types, duplicates, replacement, deletion, metadata filters and bad input.

Runs against the default install (embedded PostgreSQL with pgvector, embedded MiniLM); each test has its
own key, hence its own collection namespace.
"""

from __future__ import annotations

import io
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

# One distinct sentence per format; each sits in the second section (or on page 2) of its document, after a
# first section about something else, so the section/page check means something.
TXT = "The lighthouse keeper writes down the height of the tide at twenty to seven every morning."
MD = "Frozen tissue samples are stored at minus eighty degrees in freezer B of the basement lab."
HTML = "Visitors park their bicycles on level three of the north garage next to the elevator."
PDF_PAGE_1 = "The cafeteria serves pumpkin soup on Mondays and lentil stew on Thursdays."
PDF = "The quarterly audit of the vault happens in the second week of October."
DOCX = "Lost security badges are replaced at the front desk for a fee of twelve euros."
HIDDEN = "zanzibarscriptmarker"


def _txt() -> bytes:
    return f"Harbour notes.\n\nThe ferry leaves from pier four on weekdays.\n\n{TXT}\n".encode()


def _md() -> bytes:
    return f"# Introduction\n\nThis handbook covers the laboratory.\n\n## Storage rules\n\n{MD}\n".encode()


def _html() -> bytes:
    return (
        "<!DOCTYPE html><html><head><title>Campus guide</title>"
        f"<script>var marker = '{HIDDEN}';</script><style>p {{ color: red; }}</style></head><body>"
        "<h1>Welcome</h1><p>The campus opens at eight in the morning.</p>"
        f"<h2>Parking</h2><p>{HTML}</p></body></html>"
    ).encode()


def _pdf() -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for sentence in (PDF_PAGE_1, PDF):
        pdf.add_page()
        pdf.multi_cell(0, 10, sentence)
    return bytes(pdf.output())


def _docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Overview", level=1)
    document.add_paragraph("This guide explains the building's front desk services.")
    document.add_heading("Security badges", level=1)
    document.add_paragraph(DOCX)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


FORMATS = {
    # name: (filename, content type, build, sentence, expected section, expected page, stored mime)
    "txt": ("notes.txt", "text/plain", _txt, TXT, None, None, "text/plain"),
    "md": ("lab.md", "text/markdown", _md, MD, "Storage rules", None, "text/markdown"),
    "html": ("campus.html", "text/html", _html, HTML, "Parking", None, "text/html"),
    "pdf": ("audit.pdf", "application/pdf", _pdf, PDF, "Page 2", 2, "application/pdf"),
    "docx": (
        "badges.docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        _docx,
        DOCX,
        "Security badges",
        None,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_each_supported_format_is_searchable_with_its_section_and_page(rag, fmt: str) -> None:
    filename, content_type, build, sentence, section, page, mime = FORMATS[fmt]
    collection = rag.create_collection()["name"]
    response = rag.upload(collection, filename, build(), content_type)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["status"] == "queued" and queued["duplicate"] is False
    assert queued["mime"] == mime and queued["filename"] == filename and queued["title"] == filename
    assert queued["job_id"].startswith("job_")

    document = rag.wait_ready(collection, queued["id"])
    # Chunks follow structure: the first section (or page) and the one with the sentence are apart.
    assert document["chunk_count"] >= (1 if section is None else 2)
    assert document["error"] is None

    for mode in ("hybrid", "vector", "keyword"):
        hits = rag.search(collection, sentence, mode=mode, top_k=5)
        assert hits, f"{mode}: no hits"
        top = hits[0]
        assert sentence in " ".join(top["text"].split()), f"{mode}: top hit is {top['text']!r}"
        assert top["document_id"] == document["id"]
        assert top["section"] == section, (mode, top)
        assert top["page"] == page, (mode, top)
        assert top["title"] == filename


def test_html_scripts_and_styles_are_not_indexed(rag) -> None:
    collection = rag.create_collection()["name"]
    document = rag.wait_ready(collection, rag.upload(collection, "campus.html", _html(), "text/html").json()["id"])
    assert document["status"] == "ready"
    assert rag.search(collection, HIDDEN, mode="keyword") == []
    every = rag.search(collection, "campus parking", mode="vector", top_k=50)
    assert every and not any(HIDDEN in hit["text"] or "color: red" in hit["text"] for hit in every)


def test_json_text_and_markdown_documents(rag) -> None:
    collection = rag.create_collection()["name"]
    plain = rag.add_ready(collection, "The greenhouse is watered at dawn.", title="Greenhouse")
    assert plain["mime"] == "text/plain" and plain["title"] == "Greenhouse"
    markdown = rag.add_ready(
        collection,
        "# Orchard\n\nApple trees are pruned in February.",
        format="markdown",
        source_url="https://intranet.example/orchard",
    )
    assert markdown["mime"] == "text/markdown" and markdown["source_url"] == "https://intranet.example/orchard"
    top = rag.search(collection, "When are the apple trees pruned?")[0]
    assert top["document_id"] == markdown["id"] and top["section"] == "Orchard"
    listed = {d["id"] for d in rag.documents(collection)}
    assert listed == {plain["id"], markdown["id"]}
    assert rag.http.get(f"/v1/collections/{collection}").json()["document_count"] == 2


@pytest.mark.parametrize(
    ("filename", "content_type", "content"),
    [
        ("photo.png", "image/png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"),
        (
            "sheet.xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
        ),
        ("blob.bin", "application/octet-stream", bytes(range(256))),
    ],
)
def test_unsupported_type_is_415(rag, ragkit, filename: str, content_type: str, content: bytes) -> None:
    collection = rag.create_collection()["name"]
    error = ragkit.assert_openai_error(
        rag.upload(collection, filename, content, content_type), 415, "unsupported_media_type"
    )
    assert "text/markdown" in error["message"] and "application/pdf" in error["message"]
    assert rag.documents(collection) == []


def _jobs(rag) -> list[dict[str, Any]]:
    response = rag.http.get("/v1/jobs", params={"limit": 100})
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_duplicate_upload_returns_the_existing_document_without_a_second_job(rag) -> None:
    collection = rag.create_collection()["name"]
    content = _md()
    first = rag.upload(collection, "lab.md", content, "text/markdown")
    assert first.status_code == 202, first.text
    document = rag.wait_ready(collection, first.json()["id"])

    again = rag.upload(collection, "copy-of-lab.md", content, "text/markdown")
    assert again.status_code == 200, again.text
    body = again.json()
    assert body["duplicate"] is True
    assert body["id"] == document["id"] and body["job_id"] == document["job_id"]
    assert body["status"] == "ready" and body["filename"] == "lab.md"
    # The same text through the JSON route is the same content too.
    as_json = rag.add_text(collection, content.decode(), format="markdown")
    assert as_json.status_code == 200 and as_json.json()["duplicate"] is True

    assert len(rag.documents(collection)) == 1
    jobs = [j for j in _jobs(rag) if j["type"] == "rag.ingest"]
    assert [j["id"] for j in jobs] == [document["job_id"]]
    # The same content in another collection is a different document.
    other = rag.create_collection()["name"]
    assert rag.upload(other, "lab.md", content, "text/markdown").status_code == 202


def test_simultaneous_duplicate_uploads_get_one_document(rag) -> None:
    """Eight uploads of the same new text at once: one creates the document, the others get it back."""
    collection = rag.create_collection()["name"]
    text = f"The bicycle shed behind building C has {uuid.uuid4().hex[:6]} numbered racks."
    barrier = threading.Barrier(8)

    def upload(_: int) -> httpx.Response:
        with httpx.Client(base_url=rag.url, headers={"Authorization": f"Bearer {rag.key}"}, timeout=120) as http:
            barrier.wait()
            return http.post(f"/v1/collections/{collection}/documents", json={"text": text})

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(upload, range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert [r.json()["duplicate"] for r in responses].count(False) == 1
    assert len(rag.documents(collection)) == 1


def test_replace_document_id_swaps_the_chunks(rag) -> None:
    collection = rag.create_collection()["name"]
    old = "The staff canteen closes at half past two on Fridays."
    new = "The rooftop beehives produce about forty kilos of honey each summer."
    keep = rag.add_ready(collection, "The print room is on the ground floor next to the mail room.")
    document = rag.add_ready(collection, old, title="Notice", metadata={"v": 1})
    assert rag.search(collection, old)[0]["document_id"] == document["id"]

    replaced = rag.add_text(collection, new, title="Notice", metadata={"v": 2}, replace_document_id=document["id"])
    assert replaced.status_code == 202, replaced.text
    assert replaced.json()["id"] == document["id"]
    assert replaced.json()["job_id"] != document["job_id"]
    ready = rag.wait_ready(collection, document["id"])
    assert ready["metadata"] == {"v": 2} and ready["chunk_count"] == 1

    hits = rag.search(collection, old, top_k=50)
    assert hits and not any("canteen" in h["text"] for h in hits)
    assert not any("canteen" in h["text"] for h in rag.search(collection, old, mode="keyword", top_k=50))
    top = rag.search(collection, new)[0]
    assert top["document_id"] == document["id"] and top["text"] == new and top["metadata"] == {"v": 2}
    assert {d["id"] for d in rag.documents(collection)} == {keep["id"], document["id"]}


def test_replace_document_id_multipart_and_unknown_id(rag, ragkit) -> None:
    collection = rag.create_collection()["name"]
    document = rag.wait_ready(collection, rag.upload(collection, "notes.txt", _txt(), "text/plain").json()["id"])
    response = rag.upload(collection, "lab.md", _md(), "text/markdown", replace_document_id=document["id"])
    assert response.status_code == 202, response.text
    ready = rag.wait_ready(collection, document["id"])
    assert ready["mime"] == "text/markdown" and ready["filename"] == "lab.md"
    assert not any("lighthouse" in h["text"] for h in rag.search(collection, TXT, top_k=50))
    assert rag.search(collection, MD)[0]["section"] == "Storage rules"

    missing = rag.add_text(collection, "Something new.", replace_document_id="doc_" + uuid.uuid4().hex[:24])
    ragkit.assert_openai_error(missing, 404, "document_not_found")


def test_deleting_a_document_removes_its_chunks_from_search(rag, ragkit) -> None:
    collection = rag.create_collection()["name"]
    stays = rag.add_ready(collection, "The archive room keeps paper invoices for ten years.")
    goes = rag.add_ready(collection, "The company choir rehearses on Wednesday evenings in room 12.")
    assert rag.search(collection, "When does the choir rehearse?")[0]["document_id"] == goes["id"]

    deleted = rag.http.delete(f"/v1/collections/{collection}/documents/{goes['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": goes["id"], "object": "document", "deleted": True}
    for mode in ("hybrid", "vector", "keyword"):
        hits = rag.search(collection, "When does the choir rehearse on Wednesday?", mode=mode, top_k=50)
        assert all(h["document_id"] == stays["id"] for h in hits), (mode, hits)
    ragkit.assert_openai_error(rag.http.get(f"/v1/collections/{collection}/documents/{goes['id']}"), 404)
    ragkit.assert_openai_error(rag.http.delete(f"/v1/collections/{collection}/documents/{goes['id']}"), 404)
    assert [d["id"] for d in rag.documents(collection)] == [stays["id"]]


def test_deleting_a_collection(rag, ragkit) -> None:
    name = rag.create_collection()["name"]
    rag.add_ready(name, "The fire drill takes place on the first Monday of every quarter.")
    assert rag.http.delete(f"/v1/collections/{name}").json()["deleted"] is True
    ragkit.assert_openai_error(rag.http.get(f"/v1/collections/{name}"), 404, "collection_not_found")
    ragkit.assert_openai_error(rag.search_raw(name, query="fire drill"), 404, "collection_not_found")
    assert name not in {c["name"] for c in rag.http.get("/v1/collections").json()["data"]}
    # The name is free again.
    assert rag.create_collection(name)["document_count"] == 0


def test_metadata_filter_restricts_results(rag) -> None:
    collection = rag.create_collection()["name"]
    hr = rag.add_ready(collection, "Parental leave lasts sixteen weeks at full pay.", metadata={"dept": "hr"})
    eng = rag.add_ready(
        collection, "Parental leave requests go through the engineering manager.", metadata={"dept": "eng", "level": 2}
    )
    assert {h["document_id"] for h in rag.search(collection, "parental leave", top_k=10)} == {hr["id"], eng["id"]}
    for mode in ("hybrid", "vector", "keyword"):
        hits = rag.search(collection, "How long is parental leave at full pay?", mode=mode, filter={"dept": "eng"})
        assert [h["document_id"] for h in hits] == [eng["id"]], mode
        assert hits[0]["metadata"] == {"dept": "eng", "level": 2}
    assert rag.search(collection, "parental leave", filter={"dept": "eng", "level": 2})[0]["document_id"] == eng["id"]
    assert rag.search(collection, "parental leave", filter={"dept": "finance"}) == []
    assert rag.search(collection, "parental leave", filter={"dept": "eng", "level": 3}) == []


def test_multipart_metadata_title_and_source_url(rag, ragkit) -> None:
    collection = rag.create_collection()["name"]
    response = rag.upload(
        collection,
        "lab.md",
        _md(),
        "text/markdown",
        title="Lab handbook",
        metadata='{"team": "bio"}',
        source_url="https://wiki.example/lab",
    )
    assert response.status_code == 202, response.text
    document = rag.wait_ready(collection, response.json()["id"])
    assert document["title"] == "Lab handbook" and document["metadata"] == {"team": "bio"}
    assert document["source_url"] == "https://wiki.example/lab"
    assert rag.search(collection, MD, filter={"team": "bio"})[0]["title"] == "Lab handbook"
    bad = rag.upload(collection, "other.md", b"# x\n\ny", "text/markdown", metadata="not json")
    ragkit.assert_openai_error(bad, 400)
    ragkit.assert_openai_error(rag.upload(collection, "empty.txt", b"", "text/plain"), 400)


def test_bad_input_is_400_with_openai_error_bodies(rag, ragkit) -> None:
    collection = rag.create_collection()["name"]
    rag.add_ready(collection, "The bike shed is behind building C.")
    search = f"/v1/collections/{collection}/search"
    cases = {
        "missing query": (search, {"top_k": 3}, "query"),
        "blank query": (search, {"query": "   "}, "query"),
        "top_k 0": (search, {"query": "bike", "top_k": 0}, "top_k"),
        "top_k 51": (search, {"query": "bike", "top_k": 51}, "top_k"),
        "top_k string": (search, {"query": "bike", "top_k": "5"}, "top_k"),
        "mode x": (search, {"query": "bike", "mode": "x"}, "mode"),
        "filter list": (search, {"query": "bike", "filter": ["a"]}, "filter"),
        "empty text": (f"/v1/collections/{collection}/documents", {"text": ""}, "text"),
        "blank text": (f"/v1/collections/{collection}/documents", {"text": " \n "}, "text"),
        "metadata list": (f"/v1/collections/{collection}/documents", {"text": "x", "metadata": [1]}, "metadata"),
        "name with slash": ("/v1/collections", {"name": "team/handbook"}, "name"),
        "empty name": ("/v1/collections", {"name": ""}, "name"),
        "chunk_size too small": ("/v1/collections", {"name": "tiny", "chunk_size": 8}, "chunk_size"),
        "overlap too big": ("/v1/collections", {"name": "o", "chunk_size": 64, "chunk_overlap": 64}, "chunk_overlap"),
        "rag query without query": ("/v1/rag/query", {"collections": [collection]}, "query"),
        "rag query without collections": ("/v1/rag/query", {"query": "bike"}, "collections"),
        "rag query top_k 0": ("/v1/rag/query", {"collections": [collection], "query": "bike", "top_k": 0}, "top_k"),
    }
    for what, (path, body, param) in cases.items():
        error = ragkit.assert_openai_error(rag.http.post(path, json=body), 400)
        assert error["param"] == param, (what, error)
        assert error["type"] == "invalid_request_error", (what, error)
    ragkit.assert_openai_error(
        rag.http.post(search, content=b"{not json", headers={"content-type": "application/json"}), 400
    )
    ragkit.assert_openai_error(
        rag.http.post("/v1/collections", json={"name": "x", "embedding_model": "no-such-model"}), 400, "model_not_found"
    )
    ragkit.assert_openai_error(rag.http.post("/v1/collections", json={"name": collection}), 409, "conflict")
    ragkit.assert_openai_error(rag.search_raw("no-such-collection", query="bike"), 404, "collection_not_found")


def test_the_rag_scope_is_required(inferhub, ragkit) -> None:
    with ragkit.Rag(inferhub.url, ragkit.new_key(inferhub, "inference")) as client:
        ragkit.assert_openai_error(client.http.get("/v1/collections"), 403, "insufficient_scope")
        ragkit.assert_openai_error(client.http.post("/v1/collections", json={"name": "x"}), 403, "insufficient_scope")
        ragkit.assert_openai_error(
            client.http.post("/v1/rag/query", json={"collections": ["x"], "query": "q"}), 403, "insufficient_scope"
        )
        chat = {"model": "smollm2", "messages": [{"role": "user", "content": "q"}], "collections": ["x"]}
        ragkit.assert_openai_error(client.http.post("/v1/chat/completions", json=chat), 403, "insufficient_scope")


def test_searches_are_metered_and_limited_like_any_request(inferhub, ragkit) -> None:
    """Embedding a query is work done for the key: it leaves a usage record and counts against rpm."""
    tenant = ragkit.new_tenant(inferhub)
    key = inferhub.cli("keys", "create", f"search-{uuid.uuid4().hex[:6]}", "--scope", "rag", "--tenant", tenant,
                       "--limit", "rpm=4").stdout.strip()  # fmt: skip
    ragkit.wait_until(
        lambda: httpx.get(f"{inferhub.url}/v1/collections", headers={"Authorization": f"Bearer {key}"}).status_code
        == 200,
        "the new key to reach the process",
    )  # fmt: skip
    with ragkit.Rag(inferhub.url, key) as rag:
        collection = rag.create_collection()["name"]  # request 1 of 4 (not metered: no model runs for the key)
        rag.add_ready(collection, "The fire assembly point is the car park behind the sports hall.")
        hits = rag.search(collection, "Where is the fire assembly point?", mode="hybrid")  # metered
        assert hits and "assembly point" in hits[0]["text"]
        assert rag.search(collection, "fire assembly point", mode="keyword")  # metered, no embedding
        # rpm=4: at most four of these pass in any one minute (eight, so a minute boundary cannot hide it)
        refused = [rag.search_raw(collection, query="assembly point", mode="keyword") for _ in range(8)]
    codes = [r.status_code for r in refused]
    assert 429 in codes, codes
    limited = next(r for r in refused if r.status_code == 429)
    assert limited.json()["error"]["code"] == "requests_per_minute_exceeded"

    admin = {"Authorization": f"Bearer {inferhub.api_key}"}
    tenants = httpx.get(f"{inferhub.url}/api/tenants", headers=admin).json()["data"]
    tenant_id = next(t["id"] for t in tenants if t["name"] == tenant)

    def searches() -> list[dict[str, Any]] | None:
        rows = httpx.get(f"{inferhub.url}/api/request-log", headers=admin, params={"tenant_id": tenant_id}).json()
        found = [r for r in rows["data"] if r["endpoint"] == "/v1/collections/{name}/search"]
        return found if len([r for r in found if r["status"] == 200]) >= 2 else None

    rows = ragkit.wait_until(searches, "the search usage records")
    ok = [r for r in rows if r["status"] == 200]
    assert {r["model"] for r in ok} == {"all-minilm-l6-v2"}
    assert [r["prompt_tokens"] > 0 for r in ok].count(True) == 1  # only the hybrid search embedded its query
    assert any(r["status"] == 429 for r in rows)
