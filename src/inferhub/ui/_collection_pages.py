"""A tenant's document collections (create, upload, ingestion status, search) and the playground.

Both are metered on the tenant's ``ui-playground`` key, which the dashboard creates on first use.
The playground streams a chat completion through the inference service, as ``/v1/chat/completions``, and
its retrieval from a collection is metered like the API's (a ``rag.retrieval`` usage record).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from inferhub.api.context import AppContext, request_info
from inferhub.api.principal import Principal
from inferhub.api.streaming import SSE_HEADERS, openai_sse
from inferhub.api.validation import parse_json_object
from inferhub.errors import APIError, NotFound
from inferhub.gateway.service import Call
from inferhub.rag.service import build_messages, citations, metered_search, relevant, retrieval_call
from inferhub.ui._tenant_pages import tenant_page_with
from inferhub.ui.pages import (
    PLAYGROUND_KEY,
    FormError,
    back,
    check_csrf,
    context_for,
    lenient_int,
    load_tenant,
    page_router,
    principal_of,
    read_form,
    render,
    visible_tenants,
)

router = page_router()


async def _playground_key(context: AppContext, principal: Principal, tenant_id: int | None):
    """The tenant's dashboard key: requests from the playground and the collections page are metered on it.

    ``tenant_id`` None (a platform admin's playground without a tenant) is the platform's own such key."""
    keys = await run_in_threadpool(context.admin.keys.list_for_tenant, tenant_id)
    for record in keys:
        if record.name == PLAYGROUND_KEY and record.active:
            return record
    _, record = await run_in_threadpool(lambda: context.admin.keys.create(
        PLAYGROUND_KEY, ("inference", "rag"), tenant_id=tenant_id, actor=principal.actor))  # fmt: skip
    return record


def _rag(context: AppContext):
    if context.rag is None or context.jobs is None:
        raise APIError("collections need the database", status_code=503, code="rag_unavailable")
    return context.rag


async def _collection(context: AppContext, tenant_id: int, name: str) -> dict[str, Any]:
    collection = await run_in_threadpool(
        lambda: _rag(context).store.get_collection(tenant_id=tenant_id, key_id=0, name=name)
    )
    if collection is None:
        raise NotFound(f"no collection named {name!r}")
    return collection


@router.post("/tenants/{tenant_id}/collections")
async def collection_create(request: Request, tenant_id: int):
    from inferhub.gateway.pipeline import RequestMeta

    principal = principal_of(request)
    context = context_for(request)
    await load_tenant(context, principal, tenant_id)
    form = await read_form(request)
    rag = _rag(context)
    name = str(form.get("name") or "").strip()
    try:
        if not name or "/" in name or len(name) > 200:
            raise FormError("Collection name: required, without '/' (at most 200 characters)", "name")
        model = context.default_embedding_model
        if not model or not context.registry.candidates(model):
            raise APIError("no embedding model is configured", status_code=503, code="model_not_found")
        record = await _playground_key(context, principal, tenant_id)
        vectors, _ = await rag.embed(model, ["dimension probe"], RequestMeta(party=f"tenant:{tenant_id}"))
        try:
            await run_in_threadpool(lambda: rag.store.create_collection(
                tenant_id=tenant_id, key_id=record.id, name=name, description=str(form.get("description") or ""),
                embedding_model=model, dimensions=len(vectors[0]), chunk_size=256, chunk_overlap=32))  # fmt: skip
        except Exception as exc:
            if "uq_collections_owner_name" in str(exc):
                raise FormError(f"Collection name: {name} exists already", "name") from None
            raise
    except FormError as exc:
        return await tenant_page_with(request, tenant_id, 422, collection_error=exc.message)
    return back(f"/ui/tenants/{tenant_id}#collections", f"Collection {name} created.")


@router.post("/tenants/{tenant_id}/collections/{name}/documents")
async def document_upload(request: Request, tenant_id: int, name: str):
    from inferhub.rag.extract import SUPPORTED, detect_mime

    principal = principal_of(request)
    context = context_for(request)
    await load_tenant(context, principal, tenant_id)
    form = await read_form(request)
    rag = _rag(context)
    collection = await _collection(context, tenant_id, name)
    upload = form.get("file")
    text = str(form.get("text") or "")
    try:
        if upload is not None and not isinstance(upload, str) and upload.filename:
            content, filename = await upload.read(), upload.filename
            mime = detect_mime(filename, upload.content_type, content)
        elif text.strip():
            content, filename, mime = text.encode(), None, "text/plain"
        else:
            raise FormError(f"{name}: attach a file or paste some text", "file")
        if not content:
            raise FormError(f"{name}: the document {filename or ''} is empty", "file")
        if mime not in SUPPORTED:
            raise FormError(f"{name}: {filename or 'the document'} is {mime}, which cannot be read; upload text, "
                            "Markdown, HTML, PDF or DOCX", "file")  # fmt: skip
    except FormError as exc:
        return await tenant_page_with(request, tenant_id, 422, collection_error=exc.message)
    title = str(form.get("title") or filename or text.strip().splitlines()[0][:80])
    record = await _playground_key(context, principal, tenant_id)
    document, created = await run_in_threadpool(lambda: rag.store.add_document(
        collection["id"], title=title, content=content, mime=mime, filename=filename, source_url=None,
        metadata={}))  # fmt: skip
    if created:
        job, _ = await run_in_threadpool(lambda: context.jobs.submit(
            tenant_id=tenant_id, key_id=record.id, type="rag.ingest",
            body={"document_id": document["id"], "model": collection["embedding_model"]}, priority=0,
            webhook_url=None, metadata={"collection": name}, idempotency_key=None,
            max_attempts=context.job_max_attempts))  # fmt: skip
        await run_in_threadpool(rag.store.set_job, document["id"], job["id"])
    return back(f"/ui/tenants/{tenant_id}#collections",
                 f"Document {title!r} {'queued for ingestion' if created else 'was already there'}.")  # fmt: skip


@router.get("/tenants/{tenant_id}/collections/{name}/search")
async def collection_search(request: Request, tenant_id: int, name: str):
    from inferhub.gateway.pipeline import RequestMeta

    principal = principal_of(request)
    context = context_for(request)
    await load_tenant(context, principal, tenant_id)
    collection = await _collection(context, tenant_id, name)
    query = (request.query_params.get("q") or "").strip()
    hits = []
    if query:
        hits = await _rag(context).search([collection], query, top_k=5, mode="hybrid", filter=None,
                                          meta=RequestMeta(party=f"tenant:{tenant_id}"))  # fmt: skip
    return render(request, "_hits.html", principal, hits=hits, query=query)


# -- playground ----------------------------------------------------------------------------------------

PLATFORM_COLLECTION = "#"  # "#<id>": a collection without a tenant, owned by one of the platform's keys


async def _platform_collections(context: AppContext) -> list[dict[str, str]]:
    """Collections made by keys without a tenant (the README's keys), for a platform admin's playground."""
    if context.rag is None:
        return []
    found = []
    for key in await run_in_threadpool(context.admin.keys.list_for_tenant, None):
        rows = await run_in_threadpool(lambda k=key: context.rag.store.list_collections(tenant_id=None, key_id=k.id))
        found += [{"value": f"{PLATFORM_COLLECTION}{r['id']}", "label": f"{r['name']} (key {key.prefix}…)"}
                  for r in rows]  # fmt: skip
    return found


async def _platform_collection(context: AppContext, value: str) -> dict[str, Any]:
    number = value.removeprefix(PLATFORM_COLLECTION)
    found = None
    if value.startswith(PLATFORM_COLLECTION) and number.isdigit() and int(number) < 2**31:
        found = await run_in_threadpool(_rag(context).store.get_collection_by_id, int(number))
    if found is None or found["tenant_id"] is not None:
        raise NotFound(f"no collection {value!r} without a tenant")
    return found


@router.get("/playground")
async def playground_page(request: Request):
    principal = principal_of(request)
    context = context_for(request)
    tenants = await visible_tenants(context, principal)
    collections: dict[int, list[str]] = {}
    if context.rag is not None:
        for tenant in tenants:
            rows = await run_in_threadpool(
                lambda t=tenant: context.rag.store.list_collections(tenant_id=t.id, key_id=0)
            )
            collections[tenant.id] = [r["name"] for r in rows]
    platform = await _platform_collections(context) if principal.is_platform else []
    offered = {"": platform, **{str(t): names for t, names in collections.items()}}  # JSON keys: strings
    models = [
        m
        for m in context.registry.model_names()
        if any("chat" in context.registry.adapter(b).capabilities for b in context.registry.candidates(m))
    ]
    return render(request, "playground.html", principal, tenants=tenants, models=models,
                  default_model=context.default_chat_model, collections=offered,
                  selected=lenient_int(request.query_params.get("tenant_id")))  # fmt: skip


@router.post("/playground/chat")
async def playground_chat(request: Request):
    """Stream a chat completion (OpenAI SSE) through the inference service, metered on the tenant's (or the
    platform's) playground key; a collection's retrieval is metered too, as the API's is."""
    principal = principal_of(request)
    context = context_for(request)
    check_csrf(request, request.headers.get("x-csrf-token", ""))
    body = parse_json_object(await request.body())  # a JSON object, no NUL byte (the API's own parser)
    # A tenant admin is pinned to their tenant; a platform admin may pick none (metered on the platform's key).
    tenant_id = principal.scope_tenant(lenient_int(body.get("tenant_id")))
    if tenant_id is not None:
        await load_tenant(context, principal, tenant_id)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError("messages: a non-empty list", param="messages")
    messages = [{"role": str(m.get("role")), "content": str(m.get("content"))} for m in messages
                if isinstance(m, dict) and m.get("role") in ("system", "user", "assistant")]  # fmt: skip
    model = str(body.get("model") or "")
    chat = {"model": model, "messages": messages, "stream": True, "stream_options": {"include_usage": True}}
    if isinstance(body.get("max_tokens"), int):
        chat["max_tokens"] = max(1, min(4096, body["max_tokens"]))
    # The dashboard user's playground key is the caller: the chat and its retrieval are metered like the API's.
    service = context.service
    caller = service.caller(await _playground_key(context, principal, tenant_id))
    hits: list = []
    collection = body.get("collection")
    if collection:
        if tenant_id is None:
            found = await _platform_collection(context, str(collection))
        else:
            found = await _collection(context, tenant_id, str(collection))
        question = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        call = retrieval_call(caller, [found], request_info(request, with_size=False))
        hits = relevant(await metered_search(service, _rag(context), call, [found], question, top_k=5,
                                             mode="hybrid", filter=None))  # fmt: skip
        if hits:
            chat["messages"] = [build_messages(question, hits)[0], *messages]
    opened = await service.stream(Call(caller, "chat", chat, "/v1/chat/completions", info=request_info(request)))

    async def events() -> AsyncIterator[bytes]:
        async for piece in openai_sse(opened.stream, include_usage=True):
            if hits and piece == b"data: [DONE]\n\n":
                yield b"data: " + orjson.dumps({"object": "rag.citations", "citations": citations(hits)}) + b"\n\n"
            yield piece

    return StreamingResponse(events(), media_type="text/event-stream", headers={**SSE_HEADERS, **opened.headers})
