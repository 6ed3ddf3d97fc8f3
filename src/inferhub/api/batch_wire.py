"""The OpenAI Batch API's ``file`` and ``batch`` objects, made from the stored records (times as Unix seconds)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from inferhub.deferred.records import BatchRecord, FileRecord


def _unix(moment: datetime | None) -> int | None:
    return int(moment.timestamp()) if moment else None


def file_object(record: FileRecord) -> dict[str, Any]:
    return {"id": record.id, "object": "file", "bytes": record.bytes, "created_at": _unix(record.created_at),
            "filename": record.filename, "purpose": record.purpose, "status": "processed", "expires_at": None,
            "status_details": None}  # fmt: skip


def batch_object(record: BatchRecord) -> dict[str, Any]:
    return {
        "id": record.id, "object": "batch", "endpoint": record.endpoint, "errors": None,
        "input_file_id": record.input_file_id, "completion_window": record.completion_window,
        "status": record.status, "output_file_id": record.output_file_id, "error_file_id": record.error_file_id,
        "created_at": _unix(record.created_at), "in_progress_at": _unix(record.in_progress_at), "expires_at": None,
        "finalizing_at": _unix(record.finalizing_at), "completed_at": _unix(record.completed_at), "failed_at": None,
        "expired_at": None, "cancelling_at": _unix(record.cancelling_at),
        "cancelled_at": _unix(record.cancelled_at), "request_counts": record.request_counts,
        "metadata": record.metadata,
    }  # fmt: skip
