"""The usage report (``GET /api/usage``), shared by the admin API and the dashboard's CSV download.

Not a route module: ``ui/`` imports no ``*_routes`` module (tests/test_layering.py), so what both serve lives here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import Response

from inferhub.api._params import in_thread, query_moment
from inferhub.api.context import AppContext
from inferhub.api.principal import Principal
from inferhub.api.responses import ORJSONResponse
from inferhub.errors import InvalidRequest
from inferhub.tenancy.usage import GROUPS, to_csv


def period(start: str | None, end: str | None) -> tuple[datetime, datetime]:
    """``from`` and ``to`` of a report; the last 30 days when not given."""
    now = datetime.now(UTC)
    return query_moment(start, "from", now - timedelta(days=30)), query_moment(end, "to", now + timedelta(seconds=1))


async def usage_report(context: AppContext, principal: Principal, *, group_by: str, start: str | None,
                       end: str | None, tenant_id: int | None, format: str) -> Response:  # fmt: skip
    """Requests, tokens, cost and errors per ``group_by``, as JSON or CSV; a tenant admin sees their tenant only."""
    if group_by not in GROUPS:
        raise InvalidRequest(f"group_by must be one of {', '.join(GROUPS)}", param="group_by")
    tenant = principal.scope_tenant(tenant_id)
    begin, finish = period(start, end)
    rows = await in_thread(context.admin.usage.summarize, group_by, begin, finish, tenant)
    if format == "csv":
        return Response(to_csv(rows), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="usage-by-{group_by}.csv"'})  # fmt: skip
    return ORJSONResponse({"group_by": group_by, "from": begin.isoformat(), "to": finish.isoformat(), "data": rows})
