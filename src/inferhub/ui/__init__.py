"""The server-rendered admin dashboard at ``/ui`` (Jinja2 templates, vendored htmx and Chart.js).

Public: ``routes`` (the router ``app.py`` mounts), ``pages`` (what every page shares), ``live`` (the overview's
time series) and the two asset directories. Each ``_*_pages`` module is one part of the dashboard.
"""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"

__all__ = ["STATIC_DIR", "TEMPLATE_DIR", "live", "pages", "routes"]
