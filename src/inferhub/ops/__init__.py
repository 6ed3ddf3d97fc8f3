"""Operations commands: ``inferhub backup``/``restore``, ``doctor``, ``models pull``/``warm``.

Each module does the work and reports through an ``echo`` callable; ``cli.py`` holds only thin
wrappers. An :class:`OpsError` carries one line saying what went wrong and what to do.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


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
