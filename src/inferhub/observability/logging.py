"""JSON logs with structlog: one line per event, request id bound from the request context.

Inferhub's own events are rendered by structlog with orjson and written as bytes straight to stdout (and
the log file): two lines per proxied request cost ~130 µs through the standard library's handlers and
formatter, a fifth of the gateway's CPU per request (docs/performance.md). Records of other libraries
(uvicorn, alembic) still go through ``logging``, rendered by the same processors into the same streams.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO

import orjson
import structlog


class _LineWriter:
    """structlog's logger: each rendered line (bytes) goes to every stream, flushed, in one write each."""

    def __init__(self, streams: list[BinaryIO]) -> None:
        self._streams = streams

    def msg(self, line: bytes) -> None:
        line += b"\n"
        for stream in self._streams:
            stream.write(line)
            stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _render(logger: object, method: str, event: dict) -> bytes:
    return orjson.dumps(event, default=str)


def configure_logging(level: str = "info", log_file: Path | None = None) -> None:
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    streams: list[BinaryIO] = [sys.stdout.buffer]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
        streams.append(log_file.open("ab"))
    shared = [
        _add_pid,
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    root = logging.getLogger()
    root.handlers.clear()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in ("uvicorn.access", "httpx", "httpcore", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    writer = _LineWriter(streams)
    sys.stdout.flush()  # what was printed before (the bootstrap key) stays ahead of the byte writes
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, _render],
        logger_factory=lambda *args: writer,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )


def _add_pid(logger: object, method: str, event: dict) -> dict:
    """With ``--workers N`` several processes write to one stream: say which one wrote the line."""
    event["pid"] = os.getpid()
    return event
