"""RAG API: collections, documents, search and cited answers (``rag`` scope).

Collections belong to a tenant (or to a key without a tenant); another tenant's
collections answer 404. Uploading a document stores it and queues an ingestion
job, so a 300-page PDF does not hold the connection; the document's ``status``
goes ``queued`` → ``processing`` → ``ready`` (or ``failed`` with ``error``).
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from inferhub.api import inference, validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, caller_of, context_of, request_info, request_meta
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import SSE_HEADERS, openai_sse
from inferhub.errors import APIError, InvalidRequest, NotFound, PgvectorMissing
from inferhub.rag.extract import SUPPORTED, detect_mime
from inferhub.rag.service import (
    NO_ANSWER,
    RETRIEVAL_ENDPOINT,
    build_messages,
    citations,
    extractive_answer,
    metered_search,
    relevant,
    retrieval_call,
)
from inferhub.tenancy.keys import KeyRecord

router = APIRouter(prefix="/v1", tags=["RAG"])
MODES = ("hybrid", "vector", "keyword")
ANSWER_MODES = ("generate", "extractive")
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024


def _rag(request: Request):
    context = context_of(request)
    if context.rag is None:
        raise APIError("RAG needs the database", status_code=503, code="rag_unavailable")
    return context, context.rag


async def _collection(request: Request, record: KeyRecord, name: str) -> dict[str, Any]:
    _, rag = _rag(request)
    collection = await run_in_threadpool(
        lambda: rag.store.get_collection(tenant_id=record.tenant_id, key_id=record.id, name=name)
    )
    if collection is None:
        raise NotFound(f"no collection named {name!r}", code="collection_not_found")
    return collection


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("tenant_id", "key_id", "content")}


@router.post("/collections", status_code=201)
async def create_collection(request: Request):
    record = authenticate(request, scope="rag")
    context, rag = _rag(request)
    body = validation.parse_json_object(await request.body())
    name = body.get("name")
    if not isinstance(name, str) or not name or len(name) > 200 or "/" in name:
        raise InvalidRequest("name: a non-empty string without '/'", param="name")
    model = body.get("embedding_model") or context.default_embedding_model
    if not isinstance(model, str) or not context.registry.candidates(model):
        raise InvalidRequest(f"embedding_model: no model {model!r}", param="embedding_model", code="model_not_found")
    size, overlap = body.get("chunk_size", 256), body.get("chunk_overlap", 32)
    if not isinstance(size, int) or not 32 <= size <= 2048:
        raise InvalidRequest("chunk_size: an integer from 32 to 2048 (tokens)", param="chunk_size")
    if not isinstance(overlap, int) or not 0 <= overlap < size:
        raise InvalidRequest("chunk_overlap: an integer from 0 to chunk_size - 1", param="chunk_overlap")
    # The dimension comes from the model itself: embed one word.
    vectors, _ = await rag.embed(model, ["dimension probe"], request_meta(request))
    try:
        collection = await run_in_threadpool(
            lambda: rag.store.create_collection(
                tenant_id=record.tenant_id,
                key_id=record.id,
                name=name,
                description=str(body.get("description", "")),
                embedding_model=model,
                dimensions=len(vectors[0]),
                chunk_size=size,
                chunk_overlap=overlap,
            )
        )
    except PgvectorMissing as exc:
        raise APIError(str(exc), status_code=501, code="pgvector_missing") from None
    except Exception as exc:
        if "uq_collections_owner_name" in str(exc):
            raise APIError(f"a collection named {name!r} exists", status_code=409, code="conflict") from None
        raise
    return ORJSONResponse(_public(collection), status_code=201)


@router.get("/collections")
async def list_collections(request: Request):
    record = authenticate(request, scope="rag")
    _, rag = _rag(request)
    rows = await run_in_threadpool(lambda: rag.store.list_collections(tenant_id=record.tenant_id, key_id=record.id))
    return ORJSONResponse({"object": "list", "data": [_public(r) for r in rows]})


@router.get("/collections/{name}")
async def get_collection(request: Request, name: str):
    record = authenticate(request, scope="rag")
    return ORJSONResponse(_public(await _collection(request, record, name)))


@router.delete("/collections/{name}")
async def delete_collection(request: Request, name: str):
    record = authenticate(request, scope="rag")
    collection = await _collection(request, record, name)
    _, rag = _rag(request)
    await run_in_threadpool(rag.store.delete_collection, collection["id"])
    return ORJSONResponse({"id": collection["id"], "object": "collection", "name": name, "deleted": True})


@router.post("/collections/{name}/documents", status_code=202)
async def add_document(request: Request, name: str):
    """Multipart (``file`` plus optional ``title``, ``metadata`` JSON, ``source_url``) or JSON (``text``, …)."""
    record = authenticate(request, scope="rag")
    collection = await _collection(request, record, name)
    context, rag = _rag(request)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidRequest("file: attach the document as the multipart field 'file'", param="file")
        content = await upload.read()
        filename = upload.filename
        mime = detect_mime(filename, upload.content_type, content)
        title = str(form.get("title") or filename or "untitled")
        metadata = _metadata(form.get("metadata"))
        source_url = form.get("source_url") if isinstance(form.get("source_url"), str) else None
        replace = form.get("replace_document_id") if isinstance(form.get("replace_document_id"), str) else None
    else:
        body = validation.parse_json_object(await request.body())
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest("text: a non-empty string (or upload a file as multipart/form-data)", param="text")
        content, filename = text.encode(), None
        mime = "text/markdown" if body.get("format") == "markdown" else "text/plain"
        title = str(body.get("title") or text.strip().splitlines()[0][:80])
        metadata = _metadata(body.get("metadata"))
        source_url = body.get("source_url") if isinstance(body.get("source_url"), str) else None
        replace = body.get("replace_document_id") if isinstance(body.get("replace_document_id"), str) else None
    if not content:
        raise InvalidRequest("file: the document is empty", param="file")
    if len(content) > MAX_DOCUMENT_BYTES:
        raise APIError(
            f"the document is larger than {MAX_DOCUMENT_BYTES} bytes", status_code=413, code="request_too_large"
        )
    if mime not in SUPPORTED:
        raise APIError(
            f"unsupported document type {mime}; supported: {', '.join(SUPPORTED)}",
            status_code=415,
            code="unsupported_media_type",
        )
    if replace is not None:
        existing = await run_in_threadpool(rag.store.get_document, replace)
        if existing is None or existing["collection_id"] != collection["id"]:
            raise NotFound(f"no document {replace} in collection {name!r}", code="document_not_found")
    document, created = await run_in_threadpool(
        lambda: rag.store.add_document(
            collection["id"],
            title=title,
            content=content,
            mime=mime,
            filename=filename,
            source_url=source_url,
            metadata=metadata,
            replace=replace,
        )
    )
    if created:
        job, _ = await run_in_threadpool(
            lambda: context.jobs.submit(
                tenant_id=record.tenant_id,
                key_id=record.id,
                type="rag.ingest",
                body={"document_id": document["id"], "model": collection["embedding_model"]},
                priority=0,
                webhook_url=None,
                metadata={"collection": name},
                idempotency_key=None,
                max_attempts=context.job_max_attempts,
            )
        )
        await run_in_threadpool(rag.store.set_job, document["id"], job["id"])
        document["job_id"] = job["id"]
    return ORJSONResponse({**_public(document), "duplicate": not created}, status_code=202 if created else 200)


def _metadata(value: Any) -> dict[str, Any]:
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise InvalidRequest("metadata: expected a JSON object", param="metadata") from None
    if not isinstance(value, dict):
        raise InvalidRequest("metadata: expected a JSON object", param="metadata")
    return value


@router.get("/collections/{name}/documents")
async def list_documents(
    request: Request,
    name: str,
    status: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
):
    record = authenticate(request, scope="rag")
    collection = await _collection(request, record, name)
    _, rag = _rag(request)
    rows = await run_in_threadpool(
        lambda: rag.store.list_documents(collection["id"], status=status, limit=limit, offset=offset)
    )
    return ORJSONResponse({"object": "list", "data": [_public(r) for r in rows]})


async def _document(request: Request, record: KeyRecord, name: str, document_id: str) -> dict[str, Any]:
    collection = await _collection(request, record, name)
    _, rag = _rag(request)
    document = await run_in_threadpool(rag.store.get_document, document_id)
    if document is None or document["collection_id"] != collection["id"]:
        raise NotFound(f"no document {document_id} in collection {name!r}", code="document_not_found")
    return document


@router.get("/collections/{name}/documents/{document_id}")
async def get_document(request: Request, name: str, document_id: str):
    record = authenticate(request, scope="rag")
    return ORJSONResponse(_public(await _document(request, record, name, document_id)))


@router.delete("/collections/{name}/documents/{document_id}")
async def delete_document(request: Request, name: str, document_id: str):
    record = authenticate(request, scope="rag")
    await _document(request, record, name, document_id)
    _, rag = _rag(request)
    await run_in_threadpool(rag.store.delete_document, document_id)
    return ORJSONResponse({"id": document_id, "object": "document", "deleted": True})


def _search_args(body: dict[str, Any]) -> tuple[str, int, str, dict | None]:
    query = body.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InvalidRequest("query: a non-empty string", param="query")
    if "\x00" in query:  # PostgreSQL text cannot hold it
        raise InvalidRequest("query: must not contain NUL characters", param="query")
    top_k = body.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 50:
        raise InvalidRequest("top_k: an integer from 1 to 50", param="top_k")
    mode = body.get("mode", "hybrid")
    if mode not in MODES:
        raise InvalidRequest(f"mode: one of {', '.join(MODES)}", param="mode")
    filter = body.get("filter")
    if filter is not None and not isinstance(filter, dict):
        raise InvalidRequest("filter: an object of metadata fields to match", param="filter")
    return query, top_k, mode, filter


@router.post("/collections/{name}/search")
async def search(request: Request, name: str):
    record = authenticate(request, scope="rag")
    body = validation.parse_json_object(await request.body())
    query, top_k, mode, filter = _search_args(body)
    collection = await _collection(request, record, name)
    hits = await _metered_search(request, [collection], query, top_k=top_k, mode=mode, filter=filter,
                                 endpoint="/v1/collections/{name}/search")  # fmt: skip
    return ORJSONResponse({"object": "list", "query": query, "mode": mode, "data": [h.public() for h in hits]})


async def _metered_search(request: Request, collections: list[dict], query: str, *, top_k: int, mode: str,
                          filter: dict | None, endpoint: str = RETRIEVAL_ENDPOINT) -> list:  # fmt: skip
    """Search with the key's limits and a usage record (the service's): embedding the query is work done
    for the key. The retrieval step of ``/v1/rag/query`` and of chat with ``collections`` gets a record of
    its own (endpoint ``rag.retrieval``), apart from the chat completion's."""
    context, rag = _rag(request)
    call = retrieval_call(caller_of(request), collections, request_info(request, with_size=False), endpoint)
    return await metered_search(context.service, rag, call, collections, query, top_k=top_k, mode=mode,
                                filter=filter)  # fmt: skip


async def _retrieve(request: Request, record: KeyRecord, names: Any, query: str, top_k: int, filter=None):
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise InvalidRequest("collections: a non-empty array of collection names", param="collections")
    collections = [await _collection(request, record, n) for n in names]
    return relevant(await _metered_search(request, collections, query, top_k=top_k, mode="hybrid",
                                          filter=filter))  # fmt: skip


@router.post("/rag/query", openapi_extra=body_schema("RagQueryRequest"))
async def rag_query(request: Request):
    """Retrieve, then answer with citations; ``stream: true`` streams the answer, citations in a final event.

    ``answer_mode``: ``generate`` (default) has the model answer from the sources; ``extractive`` calls no
    model and answers with the retrieved passages themselves, quoted and numbered like their citations.
    """
    record = authenticate(request, scope="rag")
    body = validation.parse_json_object(await request.body())
    query, top_k, _, filter = _search_args(body)
    answer_mode = "generate" if body.get("answer_mode") is None else body["answer_mode"]
    if answer_mode not in ANSWER_MODES:
        raise InvalidRequest(f"answer_mode: one of {', '.join(ANSWER_MODES)}", param="answer_mode")
    context, _ = _rag(request)
    model = body.get("model") or context.default_chat_model
    if answer_mode == "extractive":
        model = None  # no model is called: none is needed
    elif not isinstance(model, str) or not model:
        raise InvalidRequest("model: required (no default chat model is configured)", param="model")
    stream = validation.optional_bool(body, "stream")
    hits = await _retrieve(request, record, body.get("collections"), query, top_k, filter)
    if not hits:
        return _fixed_answer(NO_ANSWER, [], model, answer_mode, stream=bool(stream))
    if answer_mode == "extractive":
        return _fixed_answer(extractive_answer(hits), hits, None, answer_mode, stream=bool(stream))
    chat = {"model": model, "messages": build_messages(query, hits), "max_tokens": body.get("max_tokens", 512)}
    if body.get("temperature") is not None:
        chat["temperature"] = body["temperature"]
    if stream:
        opened = await inference.open_stream(request, "chat", {**chat, "stream": True}, endpoint="/v1/rag/query")
        return StreamingResponse(
            _with_citations(openai_sse(opened.stream, include_usage=True), hits),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **opened.headers},
        )
    done = await inference.run(request, "chat", chat, endpoint="/v1/rag/query")
    routed, result, headers = done.routed, done.body, done.headers
    answer = (result["choices"][0].get("message") or {}).get("content") or ""
    return ORJSONResponse(
        {
            "object": "rag.answer",
            "answer": answer,
            "answer_mode": "generate",
            "model": routed.served_model,
            "citations": citations(hits),
            "usage": result.get("usage"),
        },
        headers=headers,
    )


def _fixed_answer(answer: str, hits: list, model: str | None, answer_mode: str, *, stream: bool):
    """An answer no model wrote (nothing relevant found, or ``extractive``), as a response or a stream."""
    cited = citations(hits)
    if not stream:
        return ORJSONResponse({"object": "rag.answer", "answer": answer, "answer_mode": answer_mode, "model": model,
                               "citations": cited, "usage": None})  # fmt: skip

    async def events():
        chunk = {
            "id": "rag-" + ("extract" if hits else "none"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
        }
        yield b"data: " + orjson.dumps(chunk) + b"\n\n"
        yield b"data: " + orjson.dumps({"object": "rag.citations", "citations": cited}) + b"\n\n"
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


async def _with_citations(sse, hits):
    """The chat-completions stream, then one ``rag.citations`` event before ``[DONE]``."""
    async for piece in sse:
        if piece == b"data: [DONE]\n\n":
            yield b"data: " + orjson.dumps({"object": "rag.citations", "citations": citations(hits)}) + b"\n\n"
        yield piece


async def chat_with_collections(request: Request, body: dict[str, Any], endpoint: str):
    """``/v1/chat/completions`` with ``"collections": [...]``: the same chat, grounded and cited."""
    record = authenticate(request, scope="rag")
    names = body.pop("collections")
    question = next((m.get("content") for m in reversed(body["messages"]) if m.get("role") == "user"), None)
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequest(
            "messages: the last user message must be text to search the collections with", param="messages"
        )
    hits = await _retrieve(request, record, names, question, int(body.pop("top_k", 5)))
    if hits:
        grounding = build_messages(question, hits)[0]
        body = {**body, "messages": [grounding, *body["messages"]]}
    if body.get("stream"):
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        opened = await inference.open_stream(request, "chat", body, endpoint=endpoint)
        return StreamingResponse(
            _with_citations(openai_sse(opened.stream, include_usage=include_usage), hits),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **opened.headers},
        )
    result = await inference.run(request, "chat", body, endpoint=endpoint)
    return ORJSONResponse({**result.body, "citations": citations(hits)}, headers=result.headers)
