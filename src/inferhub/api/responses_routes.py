"""The OpenAI Responses API: ``/v1/responses`` (create, stream, background), ``GET``/``DELETE``,
``/input_items`` and ``/cancel``.

The route only adapts: ``protocols.responses`` translates a Responses body to a chat body and the answer
back; the chat call goes through the one ``InferenceService`` (limits, fair queue, failover, usage,
metrics and logs are its); ``store`` (default true) keeps the Response in ``context.responses``;
``background: true`` runs on the durable job queue (``jobs.worker`` completes the stored response).
Ownership is the jobs': a tenant's key sees its tenant's responses, a key without a tenant its own
(an admin key without a tenant sees the tenant-less ones); anything else is a 404, never a 403.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from inferhub.api import inference, validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import AppContext, authenticate, context_of
from inferhub.api.responses import ORJSONResponse
from inferhub.api.streaming import SSE_HEADERS
from inferhub.deferred.responses import RESPONSE_JOB_TYPE, NewResponse, StoredResponse
from inferhub.errors import APIError, InvalidRequest, ModelNotFound, NotFound
from inferhub.gateway.service import StreamResult
from inferhub.protocols import responses as protocol
from inferhub.tenancy.keys import KeyRecord

if TYPE_CHECKING:
    from inferhub.store.responses import ResponseRepository

log = structlog.get_logger("inferhub.responses")
router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])
ENDPOINT = "/v1/responses"  # the usage record's endpoint


# -- ownership and lookups ----------------------------------------------------------------------


def _owner(record: KeyRecord) -> tuple[int | None, int | None]:
    """(tenant_id, key_id) as the repository takes them: a key without a tenant sees its own responses,
    an admin key without a tenant all tenant-less ones (as for jobs)."""
    if record.tenant_id is not None:
        return record.tenant_id, None
    return None, None if "admin" in record.scopes else record.id


def _repository(context: AppContext) -> ResponseRepository:
    if context.responses is None:
        raise APIError("stored responses need the database", status_code=503, code="responses_unavailable")
    return context.responses


def _not_found(response_id: str) -> NotFound:
    return NotFound(f"Response with id '{response_id}' not found.", param="response_id")


async def _visible(request: Request, response_id: str) -> StoredResponse:
    record = authenticate(request)
    tenant_id, key_id = _owner(record)
    stored = await _repository(context_of(request)).get(response_id, tenant_id, key_id=key_id)
    if stored is None:
        raise _not_found(response_id)
    return stored


def _response_of(stored: StoredResponse) -> dict[str, Any]:
    return stored.response or {"id": stored.id, "object": "response", "status": stored.status}


# -- POST /v1/responses -------------------------------------------------------------------------


@router.post("/responses", openapi_extra=body_schema("ResponseRequest"))
@inference.metered(ENDPOINT)
async def create_response(request: Request):
    record = authenticate(request)
    body = await inference.read_body(request)
    validation.require_model(body)
    protocol.check_request(body)
    context = context_of(request)
    # Without a database (a bare gateway) nothing can be stored: the default store is then off.
    store = body.get("store") is not False and context.responses is not None
    tenant_id, key_id = _owner(record)
    history: list[dict[str, Any]] = []
    previous = body.get("previous_response_id")
    if previous:  # before create(): the chain is read as it stands
        history = await _repository(context).history(previous, tenant_id, key_id=key_id)
    chat = protocol.to_chat(body, history)
    items = protocol.input_items(body)
    response_id, created_at = protocol.new_id("resp"), time.time()
    if body.get("background"):
        return await _background(request, record, body, chat, items, response_id, created_at)
    new = NewResponse(id=response_id, tenant_id=record.tenant_id, key_id=record.id, model=body["model"],
                      request=body, input_items=items, previous_response_id=previous,
                      response=protocol.response_shell(body, response_id, created_at, "in_progress"))  # fmt: skip
    if store:
        _known_model(context, body["model"])  # no row for a request that cannot be served
        await _repository(context).create(new)
    if body.get("stream"):
        return await _stream(request, body, chat, new, created_at, store=store)
    try:
        result = await inference.run(request, "chat", chat, endpoint=ENDPOINT)
    except APIError as exc:
        if store:
            await _fail(context, new, exc)
        raise
    response = protocol.from_chat(result.body, body, response_id, created_at)
    if store:
        try:
            await _repository(context).complete(response_id, response)
        except Exception as exc:  # the answer is billed: the client gets it even if it could not be kept
            log.warning("response_store_failed", response=response_id, error=str(exc)[:300])
    return ORJSONResponse(response, headers=result.headers)


def _known_model(context: AppContext, model: str) -> None:
    """The gateway's 404 for an unknown model, before anything is stored for it."""
    if not context.registry.candidates(context.registry.resolve(model)):
        raise ModelNotFound(f"The model '{model}' does not exist; GET /v1/models lists the available models",
                            param="model")  # fmt: skip


async def _fail(context: AppContext, new: NewResponse, exc: APIError) -> None:
    failed = {**(new.response or {}), "status": "failed", "error": {"code": exc.code or "server_error",
                                                                  "message": exc.message}}  # fmt: skip
    try:
        await _repository(context).complete(new.id, failed, "failed")
    except Exception as error:  # the client gets the engine's error either way
        log.warning("response_store_failed", response=new.id, error=str(error)[:300])


async def _stream(request: Request, body: dict[str, Any], chat: dict[str, Any], new: NewResponse,
                  created_at: float, *, store: bool) -> StreamingResponse:  # fmt: skip
    context = context_of(request)
    try:
        opened = await inference.open_stream(request, "chat", chat, endpoint=ENDPOINT)
    except APIError as exc:
        if store:
            await _fail(context, new, exc)
        raise
    translator = protocol.ResponsesStream(body, new.id, created_at)
    events = _events(context, opened, translator, stored=store)
    return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **opened.headers})


async def _events(context: AppContext, opened: StreamResult, translator: protocol.ResponsesStream, *,
                  stored: bool) -> AsyncIterator[bytes]:  # fmt: skip
    """The chat chunks as Responses events; a fault mid-stream ends it with ``response.failed``; the
    Response as it ended is stored however the stream ends (a client that left: failed)."""
    try:
        for event in translator.start():
            yield protocol.sse(event)
        try:
            async for chunk in opened.stream.events:
                for event in translator.feed(chunk.data):
                    yield protocol.sse(event)
            closing = translator.finish()
        except APIError as exc:
            closing = translator.fail(exc.message, exc.code or "server_error")
        for event in closing:
            yield protocol.sse(event)
    finally:
        translator.fail("the client closed the stream before it ended", "client_disconnected")  # no-op if ended
        if stored:
            final = translator.final_response()
            task = asyncio.ensure_future(_repository(context).complete(final["id"], final))
            task.add_done_callback(_log_store_failure)
            with contextlib.suppress(Exception):  # logged by the callback; the client has had its events
                await asyncio.shield(task)


def _log_store_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("response_store_failed", error=str(task.exception())[:300])


async def _background(request: Request, record: KeyRecord, body: dict[str, Any], chat: dict[str, Any],
                      items: list[dict[str, Any]], response_id: str, created_at: float) -> ORJSONResponse:  # fmt: skip
    """Queued now, run by a job worker (it completes the stored response); the queued Response at once."""
    context = context_of(request)
    if body.get("stream"):
        raise InvalidRequest("stream: background responses do not stream here; poll GET /v1/responses/{id}",
                             param="stream", code="unsupported_value")  # fmt: skip
    if context.jobs is None:
        raise APIError("background responses need the database", status_code=503, code="jobs_unavailable")
    _known_model(context, body["model"])
    if not record.allows_model(body["model"]):
        raise APIError(f"API key {record.prefix}… may not use model '{body['model']}'", status_code=403,
                       code="model_not_allowed", param="model")  # fmt: skip
    job_id = "job_" + uuid.uuid4().hex
    shell = protocol.response_shell(body, response_id, created_at, "queued")
    await _repository(context).create(NewResponse(
        id=response_id, tenant_id=record.tenant_id, key_id=record.id, model=body["model"], request=body,
        input_items=items, status="queued", background=True, response=shell,
        previous_response_id=body.get("previous_response_id"), job_id=job_id,
    ))  # fmt: skip
    jobs = context.jobs
    await run_in_threadpool(lambda: jobs.submit(
        tenant_id=record.tenant_id, key_id=record.id, type=RESPONSE_JOB_TYPE, body=chat, priority=0,
        webhook_url=None, metadata={"response_id": response_id}, idempotency_key=None,
        max_attempts=context.job_max_attempts, job_id=job_id,
    ))  # fmt: skip
    return ORJSONResponse(shell)


# -- reading, deleting, cancelling --------------------------------------------------------------


@router.get("/responses/{response_id}")
async def get_response(request: Request, response_id: str):
    return ORJSONResponse(_response_of(await _visible(request, response_id)))


@router.delete("/responses/{response_id}")
async def delete_response(request: Request, response_id: str):
    record = authenticate(request)
    tenant_id, key_id = _owner(record)
    if not await _repository(context_of(request)).delete(response_id, tenant_id, key_id=key_id):
        raise _not_found(response_id)
    return ORJSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})


@router.get("/responses/{response_id}/input_items")
async def list_input_items(
    request: Request,
    response_id: str,
    after: str | None = None,
    limit: int = Query(default=20, ge=1, le=100),
    order: str = "desc",
    include: list[str] | None = Query(default=None),  # accepted, as the SDK may send it; nothing to include
):
    record = authenticate(request)
    tenant_id, key_id = _owner(record)
    page = await _repository(context_of(request)).input_items(response_id, tenant_id, key_id=key_id, after=after,
                                                             limit=limit, order=order)  # fmt: skip
    if page is None:
        raise _not_found(response_id)
    return ORJSONResponse(page)


@router.post("/responses/{response_id}/cancel")
async def cancel_response(request: Request, response_id: str):
    """A queued or running background response becomes cancelled, and its job is cancelled (a job already
    running stops its upstream call); a finished one is returned as it is."""
    record = authenticate(request)
    tenant_id, key_id = _owner(record)
    context = context_of(request)
    stored = await _repository(context).cancel(response_id, tenant_id, key_id=key_id)
    if stored is None:
        raise _not_found(response_id)
    if stored.job_id and stored.status == "cancelled" and context.jobs is not None:
        jobs, job_id = context.jobs, stored.job_id
        await run_in_threadpool(lambda: jobs.cancel(job_id))
    return ORJSONResponse(_response_of(stored))
