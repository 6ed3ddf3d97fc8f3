"""Jobs and batches as data: what a job may run, the stored file and batch, and the lines of a batch's results."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

JOB_TYPES = ("chat.completions", "completions", "embeddings")
# The endpoints a batch may name, and the job type each line of it becomes.
ENDPOINT_TYPES = {"/v1/chat/completions": "chat.completions", "/v1/completions": "completions",
                  "/v1/embeddings": "embeddings"}  # fmt: skip


@dataclass(frozen=True, slots=True)
class FileRecord:
    id: str
    tenant_id: int | None
    key_id: int | None
    purpose: str
    filename: str
    bytes: int
    created_at: datetime | None
    content: bytes | None = None  # only when asked for


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: str
    tenant_id: int | None
    key_id: int | None
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    output_file_id: str | None
    error_file_id: str | None
    created_at: datetime | None
    in_progress_at: datetime | None
    finalizing_at: datetime | None
    completed_at: datetime | None
    cancelling_at: datetime | None
    cancelled_at: datetime | None
    request_counts: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None


# -- the lines of a batch's output and error files (JSONL, one per request, as OpenAI writes them) --------


def invalid_line(custom_id: str | None, error: dict[str, Any]) -> bytes:
    """A line of the input that never became a job (not JSON, no custom_id, a body the endpoint refuses)."""
    return orjson.dumps({"id": f"batch_req_{uuid.uuid4().hex[:24]}", "custom_id": custom_id, "response": None,
                         "error": error})  # fmt: skip


def output_line(job_id: str, custom_id: str | None, result: Any) -> bytes:
    return orjson.dumps({"id": _request_id(job_id), "custom_id": custom_id, "error": None,
                         "response": {"status_code": 200, "request_id": job_id, "body": result}})  # fmt: skip


def error_line(job_id: str, custom_id: str | None, error: dict[str, Any]) -> bytes:
    return orjson.dumps({
        "id": _request_id(job_id), "custom_id": custom_id,
        "response": {"status_code": error.get("status", 500), "request_id": job_id, "body": {"error": error}},
        "error": {"code": error.get("code"), "message": error.get("message")},
    })  # fmt: skip


def _request_id(job_id: str) -> str:
    return f"batch_req_{job_id[4:28]}"
