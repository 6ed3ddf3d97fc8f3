"""Shared helpers for the RAG tests, offered as the ``ragkit`` fixture.

With ``--import-mode=importlib`` this directory is not on ``sys.path``, so helpers cannot be imported from a
sibling module; the ``ragkit`` fixture hands out this module's helpers instead (``ragkit.Rag``,
``ragkit.new_key(...)``). The corpus generator for the retrieval check lives in ``bench/corpus`` (shared with
``bench/rag_bench.py``), so the repository root goes on ``sys.path`` as in ``tests/bench/conftest.py``.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import InferhubProcess

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

DOCX_MIME = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(interval)
    return result


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """An OpenAI-shaped error body: ``{"error": {"message", "type", "param", "code"}}``."""
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    error = response.json()["error"]
    assert isinstance(error, dict), response.text
    assert isinstance(error["message"], str) and error["message"]
    assert set(error) >= {"message", "type", "param", "code"}, error
    if code is not None:
        assert error["code"] == code, error
    return error


def new_key(process: InferhubProcess, *scopes: str, tenant: str | None = None, name: str | None = None) -> str:
    """A fresh key (through the CLI) that the running process already accepts."""
    args = ["keys", "create", name or f"rag-{uuid.uuid4().hex[:8]}"]
    for scope in scopes or ("rag", "inference"):
        args += ["--scope", scope]
    if tenant is not None:
        args += ["--tenant", tenant]
    key = process.cli(*args).stdout.strip()

    def known() -> bool:
        response = httpx.get(f"{process.url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        return not (response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key")

    wait_until(known, "the new key to reach the process", timeout=15)
    return key


def new_tenant(process: InferhubProcess, name: str | None = None) -> str:
    name = name or f"tenant-{uuid.uuid4().hex[:8]}"
    process.cli("tenants", "create", name)
    return name


class Rag:
    """The RAG API as one key sees it."""

    def __init__(self, url: str, key: str, timeout: float = 300) -> None:
        self.url = url
        self.key = key
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Rag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collections ------------------------------------------------------------------------------------

    def create_collection(self, name: str | None = None, **body: Any) -> dict[str, Any]:
        name = name or f"c-{uuid.uuid4().hex[:8]}"
        response = self.http.post("/v1/collections", json={"name": name, **body})
        assert response.status_code == 201, response.text
        return response.json()

    # -- documents --------------------------------------------------------------------------------------

    def upload(
        self,
        collection: str,
        filename: str,
        content: bytes,
        content_type: str = "application/octet-stream",
        **fields: Any,
    ) -> httpx.Response:
        data = {k: v for k, v in fields.items() if v is not None}
        return self.http.post(
            f"/v1/collections/{collection}/documents",
            files={"file": (filename, content, content_type)},
            data=data,
        )

    def add_text(self, collection: str, text: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/v1/collections/{collection}/documents", json={"text": text, **body})

    def document(self, collection: str, document_id: str) -> dict[str, Any]:
        response = self.http.get(f"/v1/collections/{collection}/documents/{document_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def documents(self, collection: str, **params: Any) -> list[dict[str, Any]]:
        response = self.http.get(f"/v1/collections/{collection}/documents", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        return response.json()["data"]

    def wait_ready(self, collection: str, document_id: str, timeout: float = 120) -> dict[str, Any]:
        """Poll the document until its ingestion job has finished; fail on ``failed``."""

        def done() -> dict[str, Any] | None:
            document = self.document(collection, document_id)
            assert document["status"] != "failed", f"ingestion failed: {document['error']}"
            return document if document["status"] == "ready" else None

        return wait_until(done, f"document {document_id} to be ready", timeout=timeout, interval=0.2)

    def wait_all_ready(self, collection: str, count: int, timeout: float = 120) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            docs = self.documents(collection)
            failed = [d for d in docs if d["status"] == "failed"]
            assert not failed, f"ingestion failed: {failed[0]['error']}"
            ready = [d for d in docs if d["status"] == "ready"]
            return docs if len(ready) == count else None

        return wait_until(done, f"{count} documents to be ready", timeout=timeout, interval=0.5)

    def add_ready(self, collection: str, text: str, **body: Any) -> dict[str, Any]:
        """Add a text document and wait until it is searchable."""
        response = self.add_text(collection, text, **body)
        assert response.status_code == 202, response.text
        return self.wait_ready(collection, response.json()["id"])

    # -- search and answers -----------------------------------------------------------------------------

    def search_raw(self, collection: str, **body: Any) -> httpx.Response:
        return self.http.post(f"/v1/collections/{collection}/search", json=body)

    def search(self, collection: str, query: str, **body: Any) -> list[dict[str, Any]]:
        response = self.search_raw(collection, query=query, **body)
        assert response.status_code == 200, response.text
        return response.json()["data"]


class _Kit:
    DOCX_MIME = DOCX_MIME
    Rag = Rag
    wait_until = staticmethod(wait_until)
    assert_openai_error = staticmethod(assert_openai_error)
    new_key = staticmethod(new_key)
    new_tenant = staticmethod(new_tenant)


@pytest.fixture(scope="session")
def ragkit() -> type[_Kit]:
    return _Kit


@pytest.fixture
def rag(inferhub: InferhubProcess):
    """A fresh key (scopes rag, inference, jobs) on the default install, so every test has its own namespace."""
    with Rag(inferhub.url, new_key(inferhub, "rag", "inference", "jobs")) as client:
        yield client
