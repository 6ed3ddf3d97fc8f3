"""Usage and cost (by tenant, model, day or key; CSV; monthly statements) and the request log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from inferhub.api.usage_report import usage_report
from inferhub.tenancy.usage import month_bounds
from inferhub.ui.pages import context_for, lenient_int, page_router, principal_of, render, visible_tenants

router = page_router()


def usage_chart(rows: list[dict], label: str) -> dict[str, list]:
    """What the requests/tokens and cost charts plot, one entry per row."""
    return {"labels": [r[label] for r in rows], "requests": [r["requests"] for r in rows],
            "tokens": [r["prompt_tokens"] + r["completion_tokens"] for r in rows],
            "cost": [float(r["cost"]) for r in rows]}  # fmt: skip


@router.get("/usage")
async def usage_page(request: Request):
    principal = principal_of(request)
    context = context_for(request)
    query = request.query_params
    group_by = query.get("group_by", "tenant")
    if group_by not in ("tenant", "model", "day", "key"):
        group_by = "tenant"
    tenant_id = principal.scope_tenant(lenient_int(query.get("tenant_id")))
    days = max(1, min(366, lenient_int(query.get("days")) or 30))
    now = datetime.now(UTC)
    begin = now - timedelta(days=days)
    rows = await run_in_threadpool(context.admin.usage.summarize, group_by, begin, now + timedelta(seconds=1),
                                   tenant_id)  # fmt: skip
    tenants = await visible_tenants(context, principal)
    names = {t.id: t.name for t in tenants}
    for row in rows:
        group = row[group_by]
        row["label"] = (names.get(group, "(no tenant)" if group is None else f"#{group}")
                        if group_by == "tenant" else str(group))  # fmt: skip
    statement, statement_error = None, None
    month = query.get("month") or now.strftime("%Y-%m")
    statement_tenant = tenant_id if tenant_id is not None else lenient_int(query.get("statement_tenant"))
    try:
        m_begin, m_end = month_bounds(month)
    except ValueError:
        statement_error, statement_tenant = f"Month: expected YYYY-MM, got {month!r}", None
    if statement_tenant is not None and principal.sees(statement_tenant):
        lines = await run_in_threadpool(context.admin.usage.summarize, "model", m_begin, m_end, statement_tenant)
        statement = {"tenant": names.get(statement_tenant, f"#{statement_tenant}"), "month": month, "lines": lines,
                     "requests": sum(line["requests"] for line in lines),
                     "tokens": sum(line["prompt_tokens"] + line["completion_tokens"] for line in lines),
                     "cost": str(sum((Decimal(line["cost"]) for line in lines), Decimal(0)).quantize(
                         Decimal("0.000001")))}  # fmt: skip
    csv_query = f"group_by={group_by}&from={quote(begin.isoformat())}" + (
        f"&tenant_id={tenant_id}" if tenant_id is not None else "")  # fmt: skip
    return render(request, "usage.html", principal, rows=rows, group_by=group_by, days=days, tenant_id=tenant_id,
                  tenants=tenants, month=month, statement=statement, statement_tenant=statement_tenant,
                  statement_error=statement_error,
                  csv_url=f"/ui/usage.csv?{csv_query}", chart=usage_chart(rows, "label"),
                  total_cost=str(sum((Decimal(r["cost"]) for r in rows), Decimal(0))))  # fmt: skip


@router.get("/usage.csv")
async def usage_csv(request: Request):
    """The same CSV as ``GET /api/usage?format=csv``, with the session cookie."""
    principal = principal_of(request)
    query = request.query_params
    return await usage_report(context_for(request), principal, group_by=query.get("group_by", "tenant"),
                              start=query.get("from"), end=query.get("to"),
                              tenant_id=lenient_int(query.get("tenant_id")), format="csv")  # fmt: skip


# -- request log ---------------------------------------------------------------------------------------


@router.get("/requests")
async def requests_page(request: Request):
    principal = principal_of(request)
    context = context_for(request)
    query = request.query_params
    tenant_id = principal.scope_tenant(lenient_int(query.get("tenant_id")))
    model = query.get("model") or None
    status = lenient_int(query.get("status"))
    limit = max(1, min(500, lenient_int(query.get("limit")) or 100))
    rows = await run_in_threadpool(lambda: context.admin.usage.request_log(
        tenant_id=tenant_id, key_id=lenient_int(query.get("key_id")), model=model, status=status, start=None, end=None,
        limit=limit, before_id=None))  # fmt: skip
    if not principal.is_platform:
        rows = [r for r in rows if r["tenant_id"] == principal.tenant_id]
    tenants = await visible_tenants(context, principal)
    return render(request, "requests.html", principal, rows=rows, tenants=tenants, tenant_id=tenant_id, model=model,
                  status=status, limit=limit)  # fmt: skip
