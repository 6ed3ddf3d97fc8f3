"""Engine creation and the change-notification channel shared by every replica."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from inferhub.errors import Conflict, ValueRefused

# One channel for "configuration changed": keys, backends. Payload names the kind.
CHANGE_CHANNEL = "inferhub_changes"


def sqlalchemy_url(database_url: str) -> str:
    """Accept ``postgresql://`` URLs and pick the psycopg 3 driver for SQLAlchemy."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError(f"unsupported database URL (expected postgresql://...): {database_url.split('@')[-1]}")


def libpq_url(database_url: str) -> str:
    """The same URL in the plain form psycopg and libpq tools accept."""
    return "postgresql://" + sqlalchemy_url(database_url)[len("postgresql+psycopg://") :]


def _constraint(exc: IntegrityError) -> str | None:
    """The name of the constraint PostgreSQL says was broken (``uq_tenants_name``), if it says."""
    return getattr(getattr(exc.orig, "diag", None), "constraint_name", None)


class Database:
    """Owns the SQLAlchemy engine. Used off the request path only."""

    def __init__(self, database_url: str) -> None:
        self.url = libpq_url(database_url)
        self.engine: Engine = create_engine(
            sqlalchemy_url(database_url), pool_pre_ping=True, pool_size=5, max_overflow=5
        )
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction. The driver's refusals leave as ``Conflict`` and ``ValueRefused`` (inferhub.errors),
        so the layers above never import SQLAlchemy to catch them."""
        try:
            with self._sessions.begin() as session:
                yield session
        except IntegrityError as exc:
            raise Conflict(_constraint(exc)) from exc
        except DataError as exc:
            raise ValueRefused(type(exc.orig).__name__ if exc.orig is not None else "DataError") from exc

    def notify_change(self, session: Session, kind: str) -> None:
        """Tell every replica (including this one) to reload ``kind`` on commit."""
        session.execute(text("SELECT pg_notify(:channel, :kind)"), {"channel": CHANGE_CHANNEL, "kind": kind})

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
