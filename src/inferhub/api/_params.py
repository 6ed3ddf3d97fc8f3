"""Input shapes of the admin API that keep bad input a 400 instead of a database error (a 500).

Ids fit their columns (PostgreSQL ``integer`` or ``bigint``), text carries no NUL
byte (PostgreSQL refuses it in every text column), numbers are finite and bounded,
moments parse and fit a ``timestamptz``. ``in_thread`` runs a repository call off
the event loop and turns whatever PostgreSQL still refuses as data (a value too
long, out of range) into a 400: the last line of defence, not the first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import structlog
from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator
from starlette.concurrency import run_in_threadpool

from inferhub.errors import REFUSED_VALUE_MESSAGE, InvalidRequest, ValueRefused
from inferhub.tenancy.usage import parse_moment

log = structlog.get_logger("inferhub.api")

INT_MAX = 2**31 - 1  # PostgreSQL integer: ids of tenants, keys, users, backends; statuses
BIGINT_MAX = 2**63 - 1  # PostgreSQL bigint: ids of usage and audit rows
NAME_LENGTH = 200  # the varchar(200) columns: names, model names, aliases
COUNT_MAX = 10**12  # a limit or budget beyond this is a typo, and it must still fit Redis and JSON
COST_MAX = 1e12

T = TypeVar("T")


def no_nul(value: T) -> T:
    """Refuse a NUL byte anywhere in a string, or in the strings of a list or dict."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("text must not contain a NUL byte")
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            no_nul(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            no_nul(key)
            no_nul(item)
    return value


def storable_moment(value: datetime | None) -> datetime | None:
    """A moment in UTC that PostgreSQL and Python can both hold (naive means UTC)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        value = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be between the years 1 and 9999") from None
    if value.year >= 9999:
        raise ValueError("must be before the year 9999")
    return value


Text = Annotated[str, AfterValidator(no_nul)]
Moment = Annotated[datetime, AfterValidator(storable_moment)]

# Path and query parameters.
RowId = Annotated[int, Path(ge=1, le=INT_MAX)]
ModelPath = Annotated[str, Path(min_length=1, max_length=NAME_LENGTH), AfterValidator(no_nul)]
QueryId = Annotated[int | None, Query(ge=1, le=INT_MAX)]
QueryBigId = Annotated[int | None, Query(ge=1, le=BIGINT_MAX)]
QueryText = Annotated[str | None, Query(max_length=NAME_LENGTH), AfterValidator(no_nul)]
QueryStatus = Annotated[int | None, Query(ge=100, le=599)]


class AdminBody(BaseModel):
    """Base of every admin request body: unknown fields refused, no NUL bytes, no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        return no_nul(value)


def query_moment(value: str | None, param: str, default: datetime | None = None) -> datetime | None:
    """An ISO date or datetime from a query parameter (``from``, ``to``), or a 400 naming it."""
    if not value:
        return default
    try:
        moment = parse_moment(no_nul(value), datetime.now(UTC))
        return storable_moment(moment)
    except ValueError as exc:
        raise InvalidRequest(f"{param}: {exc}", param=param, code="invalid_value") from None


async def in_thread(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a (synchronous) repository call in a worker thread; data PostgreSQL refuses is a 400."""
    try:
        return await run_in_threadpool(call, *args, **kwargs)
    except ValueRefused as exc:
        # The driver's message quotes the offending value, which may be a credential: name only the kind.
        log.info("admin_input_refused", reason=exc.reason)
        raise InvalidRequest(REFUSED_VALUE_MESSAGE, code="invalid_value") from None
