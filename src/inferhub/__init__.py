"""Inferhub: a self-hosted LLM gateway. Entry points: ``cli`` (the ``inferhub`` command), ``server``, ``app``.

Every package declares its public surface in ``__all__`` as module names (strings), not re-exported objects:
importing a package then runs nothing but its own ``__init__``, so it stays cheap and cannot close an import
cycle. A module with a leading underscore (``api/_params.py``) is private to its package; nothing outside the
package imports it. A package may also list a few names its ``__init__`` itself defines (``ops.OpsError``,
``ui.STATIC_DIR``); it imports nothing from inferhub. ``tests/test_layering.py`` enforces all of this.
"""

__version__ = "0.1.0"

__all__ = [  # the packages and the top-level modules
    "api",
    "app",
    "backends",
    "bootstrap",
    "cli",
    "deferred",
    "errors",
    "fleet",
    "gateway",
    "health_checks",
    "home",
    "housekeeping",
    "jobs",
    "json_checks",
    "observability",
    "ops",
    "protocols",
    "rag",
    "runtime",
    "server",
    "services",
    "settings",
    "store",
    "supervisor",
    "tenancy",
    "ui",
    "worker_health",
    "worker_process",
]
