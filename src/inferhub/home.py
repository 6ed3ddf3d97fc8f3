"""Which install a CLI command works on: the home it found, and a clear refusal when there is none.

Only ``inferhub serve`` (and ``inferhub worker``) create the embedded database; every other command
works on an existing one. Run from the wrong directory, a command would otherwise start a new, empty
PostgreSQL under ``./.inferhub`` and list nothing.
"""

from __future__ import annotations

from pathlib import Path

from inferhub.runtime.embedded_postgres import EmbeddedPostgres, StartupError
from inferhub.settings import Settings


def check_home(home: Path) -> Path:
    """The resolved INFERHUB_HOME, created if missing; a ``StartupError`` naming it when it is not writable."""
    home = home.resolve()
    try:
        home.mkdir(parents=True, exist_ok=True)
        probe = home / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"INFERHUB_HOME {home} is not writable ({exc.strerror}): set INFERHUB_HOME to a writable directory"
        ) from None
    return home


def open_database(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The database URL to use: ``INFERHUB_DATABASE_URL``, or the embedded server (started if needed)."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.postgres_dir)
    url = embedded.start()
    return url, embedded


def embedded_database_exists(settings: Settings) -> bool:
    """Whether INFERHUB_HOME holds an embedded PostgreSQL data directory (made by ``inferhub serve``)."""
    data_dir = settings.postgres_dir
    return data_dir.is_dir() and any(data_dir.iterdir())


def describe_home(settings: Settings) -> str:
    if settings.database_url:
        return "the database of INFERHUB_DATABASE_URL"
    return f"the embedded database under INFERHUB_HOME={settings.home.resolve()}"


def missing_database_message(settings: Settings) -> str:
    home = settings.home.resolve()
    return (
        f"no Inferhub database under INFERHUB_HOME={home} (INFERHUB_HOME is ./.inferhub of the current directory "
        "unless set): run this where `inferhub serve` runs, or point at the server's home with "
        "`INFERHUB_HOME=/path/to/.inferhub inferhub ...` or `inferhub --home /path/to/.inferhub ...` "
        "(with an external PostgreSQL set INFERHUB_DATABASE_URL); `inferhub serve` creates a new install"
    )
