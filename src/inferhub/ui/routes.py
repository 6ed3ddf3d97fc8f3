"""The dashboard at ``/ui``: every group of pages, mounted on one router.

The shared machinery (session cookie, CSRF, rendering, form fields) is in ``pages.py``; each
``_*_pages.py`` module (private to ``ui/``) is one part of the dashboard.
"""

from __future__ import annotations

from fastapi import APIRouter

from inferhub.ui import (
    _collection_pages,
    _fleet_pages,
    _job_pages,
    _login_pages,
    _tenant_pages,
    _usage_pages,
)

router = APIRouter(include_in_schema=False)
for pages in (_login_pages, _fleet_pages, _tenant_pages, _usage_pages, _job_pages, _collection_pages):
    router.include_router(pages.router)

__all__ = ["router"]
