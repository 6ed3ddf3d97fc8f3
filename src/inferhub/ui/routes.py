"""The dashboard at ``/ui``: every group of pages, mounted on one router.

The shared machinery (session cookie, CSRF, rendering, form fields) is in ``pages.py``; each
``*_pages.py`` module is one part of the dashboard.
"""

from __future__ import annotations

from fastapi import APIRouter

from inferhub.ui import collection_pages, fleet_pages, job_pages, login_pages, tenant_pages, usage_pages

router = APIRouter(include_in_schema=False)
for pages in (login_pages, fleet_pages, tenant_pages, usage_pages, job_pages, collection_pages):
    router.include_router(pages.router)

__all__ = ["router"]
