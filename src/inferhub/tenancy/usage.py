"""Usage records (one per request), model prices, and the calendar and CSV rules of the billing reports."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

GROUPS = ("tenant", "key", "model", "day")


@dataclass(slots=True)
class UsageRecord:
    request_id: str
    at: datetime
    tenant_id: int | None
    key_id: int | None
    endpoint: str
    model: str
    backend: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    status: int
    cost: Decimal
    client_ip: str | None = None
    request_bytes: int = 0
    response_bytes: int = 0
    prompt: Any = None
    completion: str | None = None


@dataclass(frozen=True, slots=True)
class Price:
    prompt_per_million: Decimal
    completion_per_million: Decimal

    def cost(self, prompt_tokens: int, completion_tokens: int) -> Decimal:
        return (self.prompt_per_million * prompt_tokens + self.completion_per_million * completion_tokens) / 1_000_000


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """``2026-11`` → [2026-11-01, 2026-12-01) in UTC."""
    try:
        year, number = (int(part) for part in month.split("-"))
        start = datetime(year, number, 1, tzinfo=UTC)
    except ValueError:
        raise ValueError(f"month must look like 2026-11, got {month!r}") from None
    end = datetime(year + (number == 12), number % 12 + 1, 1, tzinfo=UTC)
    return start, end


def day_start(moment: datetime) -> datetime:
    return datetime.combine(moment.date(), datetime.min.time(), tzinfo=UTC)


def to_csv(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def parse_moment(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"expected an ISO date or datetime, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
