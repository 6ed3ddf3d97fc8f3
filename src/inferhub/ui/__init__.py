"""The server-rendered admin dashboard at ``/ui`` (Jinja2 templates, vendored htmx and Chart.js)."""

from pathlib import Path

STATIC_DIR = Path(__file__).parent / "static"
TEMPLATE_DIR = Path(__file__).parent / "templates"

__all__ = ["STATIC_DIR", "TEMPLATE_DIR"]
