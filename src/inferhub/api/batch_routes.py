"""The OpenAI Batch API (``/v1/files``, ``/v1/batches``), so ``client.files`` and ``client.batches`` work unchanged.

Each valid input line becomes a job; a malformed line (not JSON, no ``custom_id``,
another endpoint, a body the synchronous endpoint would refuse) goes to the error
file with its ``custom_id`` and does not fail the batch.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from inferhub.api import validation
from inferhub.api.batch_wire import batch_object, file_object
from inferhub.api.context import authenticate, context_of
from inferhub.api.jobs_routes import owns
from inferhub.api.responses import ORJSONResponse
from inferhub.deferred.records import ENDPOINT_TYPES, BatchRecord, FileRecord
from inferhub.errors import APIError, InvalidRequest, NotFound

router = APIRouter(prefix="/v1", tags=["Batch API"])

PURPOSES = ("batch", "batch_output", "assistants", "fine-tune", "user_data", "rag")
_CHECKS = {"/v1/chat/completions": validation.check_chat, "/v1/completions": validation.check_completion,
           "/v1/embeddings": validation.check_embeddings}  # fmt: skip
MAX_LINES = 50_000


def _repos(request: Request):
    context = context_of(request)
    if context.files is None or context.batches is None:
        raise APIError("the Batch API needs the database", status_code=503, code="batches_unavailable")
    return context.files, context.batches


async def _own_file(request: Request, file_id: str, *, content: bool = False) -> FileRecord:
    record = authenticate(request, scope="jobs")
    files, _ = _repos(request)
    item = await run_in_threadpool(lambda: files.get(file_id, with_content=content))
    if item is None or not owns(record, item.tenant_id, item.key_id):
        raise NotFound(f"No such File object: {file_id}", code="file_not_found", param="file_id")
    return item


@router.post("/files")
async def upload_file(request: Request, file: UploadFile = File(...), purpose: str = Form(...)):
    record = authenticate(request, scope="jobs")
    if purpose not in PURPOSES:
        raise InvalidRequest(f"purpose: expected one of {', '.join(PURPOSES)}", param="purpose")
    content = await file.read()
    if purpose == "batch" and not content.strip():
        raise InvalidRequest("file: the batch input file is empty", param="file")
    files, _ = _repos(request)
    item = await run_in_threadpool(lambda: files.create(
        tenant_id=record.tenant_id, key_id=record.id, purpose=purpose, filename=file.filename or "upload.jsonl",
        content=content))  # fmt: skip
    return ORJSONResponse(file_object(item))


@router.get("/files")
async def list_files(request: Request, purpose: str | None = None, limit: int = Query(default=100, ge=1, le=1000)):
    record = authenticate(request, scope="jobs")
    files, _ = _repos(request)
    rows = await run_in_threadpool(lambda: files.list(tenant_id=record.tenant_id, key_id=record.id,
                                                      purpose=purpose, limit=limit))  # fmt: skip
    return ORJSONResponse({"object": "list", "data": [file_object(r) for r in rows], "has_more": False})


@router.get("/files/{file_id}")
async def get_file(request: Request, file_id: str):
    return ORJSONResponse(file_object(await _own_file(request, file_id)))


@router.get("/files/{file_id}/content")
async def file_content(request: Request, file_id: str):
    item = await _own_file(request, file_id, content=True)
    media = "application/jsonl" if item.filename.endswith(".jsonl") else "application/octet-stream"
    return Response(item.content, media_type=media)


@router.delete("/files/{file_id}")
async def delete_file(request: Request, file_id: str):
    await _own_file(request, file_id)
    files, _ = _repos(request)
    await run_in_threadpool(files.delete, file_id)
    return ORJSONResponse({"id": file_id, "object": "file", "deleted": True})


def _parse_lines(content: bytes, endpoint: str, known_model) -> tuple[list[dict], list[dict]]:
    requests, invalid = [], []
    lines = [line for line in content.splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        raise InvalidRequest(f"input_file_id: at most {MAX_LINES} requests per batch, got {len(lines)}",
                             param="input_file_id")  # fmt: skip
    seen: set[str] = set()
    for number, line in enumerate(lines, start=1):
        custom_id = None
        try:
            item = orjson.loads(line)
            if not isinstance(item, dict):
                raise InvalidRequest("each line must be a JSON object")
            validation.refuse_nul(item)
            custom_id = item.get("custom_id")
            if not isinstance(custom_id, str) or not custom_id:
                raise InvalidRequest("custom_id: required, a non-empty string")
            if custom_id in seen:
                raise InvalidRequest(f"custom_id: {custom_id!r} appears twice")
            if item.get("method", "POST") != "POST":
                raise InvalidRequest("method: only POST is supported")
            if item.get("url") != endpoint:
                raise InvalidRequest(f"url: must be the batch's endpoint {endpoint}, got {item.get('url')!r}")
            body = item.get("body")
            if not isinstance(body, dict):
                raise InvalidRequest("body: expected an object")
            _CHECKS[endpoint](body)
            if body.get("stream"):
                raise InvalidRequest("body.stream: batch requests do not stream")
            if not known_model(body["model"]):
                raise InvalidRequest(f"model: the model '{body['model']}' does not exist", code="model_not_found")
            seen.add(custom_id)
            requests.append({"line": number, "custom_id": custom_id, "body": body})
        except orjson.JSONDecodeError:
            error = {"code": "invalid_json", "message": f"line {number} is not valid JSON"}
            invalid.append({"line": number, "custom_id": None, "error": error})
        except InvalidRequest as exc:
            error = {"code": exc.code or "invalid_request", "message": f"line {number}: {exc.message}"}
            invalid.append({"line": number, "custom_id": custom_id, "error": error})
    return requests, invalid


@router.post("/batches")
async def create_batch(request: Request):
    record = authenticate(request, scope="jobs")
    body = validation.parse_json_object(await request.body())
    endpoint = body.get("endpoint")
    if endpoint not in ENDPOINT_TYPES:
        raise InvalidRequest(f"endpoint: expected one of {', '.join(ENDPOINT_TYPES)}", param="endpoint")
    if body.get("completion_window", "24h") != "24h":
        raise InvalidRequest("completion_window: only 24h is supported", param="completion_window")
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidRequest("metadata: expected an object", param="metadata")
    input_id = body.get("input_file_id")
    if not isinstance(input_id, str):
        raise InvalidRequest("input_file_id: required", param="input_file_id")
    item = await _own_file(request, input_id, content=True)
    if item.purpose != "batch":
        raise InvalidRequest("input_file_id: the file's purpose must be 'batch'", param="input_file_id")
    context = context_of(request)
    known = lambda model: bool(context.registry.candidates(model)) and record.allows_model(model)  # noqa: E731
    requests, invalid = _parse_lines(item.content or b"", endpoint, known)
    _, batches = _repos(request)
    batch = await run_in_threadpool(lambda: batches.create(
        tenant_id=record.tenant_id, key_id=record.id, endpoint=endpoint, input_file_id=input_id,
        completion_window="24h", metadata=metadata, requests=requests, invalid=invalid,
        max_attempts=context.job_max_attempts))  # fmt: skip
    return ORJSONResponse(batch_object(batch))


async def _own_batch(request: Request, batch_id: str) -> BatchRecord:
    record = authenticate(request, scope="jobs")
    _, batches = _repos(request)
    batch = await run_in_threadpool(batches.get, batch_id)
    if batch is None or not owns(record, batch.tenant_id, batch.key_id):
        raise NotFound(f"No such Batch object: {batch_id}", code="batch_not_found", param="batch_id")
    return batch


@router.get("/batches/{batch_id}")
async def get_batch(request: Request, batch_id: str):
    return ORJSONResponse(batch_object(await _own_batch(request, batch_id)))


@router.get("/batches")
async def list_batches(request: Request, limit: int = Query(default=20, ge=1, le=100), after: str | None = None):
    record = authenticate(request, scope="jobs")
    _, batches = _repos(request)
    rows = await run_in_threadpool(lambda: batches.list(tenant_id=record.tenant_id, key_id=record.id,
                                                        limit=limit + 1, after=after))  # fmt: skip
    page = [batch_object(row) for row in rows[:limit]]
    return ORJSONResponse({"object": "list", "data": page, "first_id": page[0]["id"] if page else None,
                           "last_id": page[-1]["id"] if page else None, "has_more": len(rows) > limit})  # fmt: skip


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: str):
    await _own_batch(request, batch_id)
    _, batches = _repos(request)
    return ORJSONResponse(batch_object(await run_in_threadpool(batches.cancel, batch_id)))
