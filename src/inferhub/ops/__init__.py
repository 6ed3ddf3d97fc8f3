"""Operations commands: ``inferhub backup``/``restore``, ``doctor``, ``models pull``/``warm``.

Public: ``backup``, ``config_files``, ``doctor``, ``models``, each doing the work and reporting through an ``echo``
callable (``cli.py`` holds thin wrappers), and :class:`OpsError`, one line saying what went wrong and what to do.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["OpsError", "backup", "config_files", "doctor", "models", "redact_url"]


class OpsError(RuntimeError):
    """The command cannot continue; the message says what to fix, in one line."""


def redact_url(url: str) -> str:
    """A connection URL without its password, for messages (``postgresql://inferhub:***@db/inferhub``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)
