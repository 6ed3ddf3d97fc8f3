"""Stored Responses (OpenAI Responses API) as data: what the route hands the store and gets back.

Here, not in ``store/``, because the route builds a ``NewResponse`` and reads a ``StoredResponse`` and
``api/`` imports no ``store/`` (tests/test_layering.py). ``store.responses`` keeps the rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ACTIVE = ("queued", "in_progress")
FINAL = ("completed", "incomplete", "failed", "cancelled")
STATUSES = ACTIVE + FINAL
RESPONSE_JOB_TYPE = "responses"  # the job that runs a ``background: true`` response (not a /v1/jobs type)


@dataclass(frozen=True)
class NewResponse:
    """What the route knows when it accepts a request: ``response`` may be the shell (status queued or
    in_progress) so that ``GET`` answers in the Response shape before the result exists."""

    id: str
    tenant_id: int | None
    key_id: int
    model: str
    request: dict[str, Any]
    input_items: list[dict[str, Any]]
    status: str = "in_progress"
    background: bool = False
    response: dict[str, Any] | None = None
    previous_response_id: str | None = None
    job_id: str | None = None
    expires_at: datetime | None = None  # None: kept for the retention period


@dataclass(frozen=True)
class StoredResponse:
    id: str
    tenant_id: int | None
    key_id: int
    model: str
    status: str
    background: bool
    request: dict[str, Any]
    input_items: list[dict[str, Any]]
    response: dict[str, Any] | None
    previous_response_id: str | None
    job_id: str | None
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = field(default=None)

    @property
    def finished(self) -> bool:
        return self.status in FINAL
