"""The ``inferhub`` command: serve, migrate, backends, keys, tenants, admin users, secrets, operations."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from inferhub.runtime.embedded_postgres import StartupError
from inferhub.settings import BackendConfig, Settings, describe_config_error

app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# The embedded PostgreSQL wheel asks platformdirs for a runtime dir; its warning is noise here.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
migrate_app = typer.Typer(help="Database migrations (Alembic).", no_args_is_help=True)
backends_app = typer.Typer(help="The backend registry (llm_backends).", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
tenants_app = typer.Typer(help="Tenants (teams or apps).", no_args_is_help=True)
users_app = typer.Typer(help="Admin users (dashboard and admin API logins).", no_args_is_help=True)
secrets_app = typer.Typer(help="The master key that encrypts upstream credentials.", no_args_is_help=True)
app.add_typer(tenants_app, name="tenants")
app.add_typer(users_app, name="admin-users")
app.add_typer(secrets_app, name="secrets")
app.add_typer(migrate_app, name="migrate")
app.add_typer(backends_app, name="backends")
app.add_typer(keys_app, name="keys")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"inferhub: {message}", err=True)
    return typer.Exit(1)


def _settings(**overrides: object) -> Settings:
    """The settings, or exit with one line saying what is wrong with them (never quoting a value)."""
    try:
        return Settings(**overrides)
    except Exception as exc:
        raise _fail(f"invalid configuration: {describe_config_error(exc)}") from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (INFERHUB_HOST, default 0.0.0.0).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (INFERHUB_PORT, default 8888).")] = None,
    workers: Annotated[int | None, typer.Option(help="API worker processes (INFERHUB_WORKERS, default 1).")] = None,
    no_worker: Annotated[bool, typer.Option("--no-worker", help="Run no job worker here (see `worker`).")] = False,
    listen_fd: Annotated[int | None, typer.Option(hidden=True, help="Internal: inherited socket.")] = None,
    reuse_port: Annotated[bool, typer.Option(hidden=True, help="Internal: a worker of --workers N.")] = False,
) -> None:
    """Start the API with the embedded database and models (unless configured otherwise)."""
    from inferhub.observability.logging import configure_logging
    from inferhub.server import run

    overrides = {k: v for k, v in {"host": host, "port": port, "workers": workers}.items() if v is not None}
    if no_worker:
        overrides["run_job_worker"] = False
    settings = _settings(**overrides)
    configure_logging(settings.log_level, settings.log_file)
    raise typer.Exit(run(settings, listen_fd, reuse_port))


def _secret_box():
    from inferhub.store.secrets import SecretBox, SecretError, load_master_keys

    settings = _settings()
    try:
        return SecretBox(load_master_keys(settings.secret_key, settings.secret_key_file, settings.home.resolve()))
    except SecretError as exc:
        raise _fail(str(exc)) from None


@app.command()
def worker(
    concurrency: Annotated[int | None, typer.Option(help="Jobs run at once (INFERHUB_JOB_CONCURRENCY).")] = None,
) -> None:
    """Run only the job worker (no HTTP API): for `serve --no-worker` deployments that scale jobs apart."""
    from inferhub.observability.logging import configure_logging
    from inferhub.worker_process import run_worker

    overrides = {"concurrency": concurrency} if concurrency else {}
    settings = _settings(**({"job_concurrency": overrides["concurrency"]} if overrides else {}))
    configure_logging(settings.log_level, settings.log_file)
    raise typer.Exit(run_worker(settings))


@app.callback()
def _options(
    home: Annotated[
        str | None,
        typer.Option(
            "--home", help="The install to work on (sets INFERHUB_HOME; default ./.inferhub).", show_default=False
        ),
    ] = None,
) -> None:
    """Inferhub: one OpenAI- and Ollama-compatible endpoint for your own models."""
    if home is not None:
        os.environ["INFERHUB_HOME"] = home


@contextmanager
def _database_url(*, create: bool = False) -> Iterator[str]:
    """The configured database, or the embedded one (reused if `serve` is running, else started briefly).

    A missing embedded database is an error naming the home that was looked at, unless ``create``.
    """
    from inferhub.home import (
        check_home,
        describe_home,
        embedded_database_exists,
        missing_database_message,
        open_database,
    )

    settings = _settings()
    if not settings.database_url and not create and not embedded_database_exists(settings):
        raise _fail(missing_database_message(settings))
    typer.echo(f"inferhub: using {describe_home(settings)}", err=True)
    try:
        if not settings.database_url:
            check_home(settings.home)
        url, embedded = open_database(settings)
    except StartupError as exc:
        raise _fail(str(exc)) from None
    try:
        yield url
    finally:
        if embedded is not None:
            embedded.stop()


@contextmanager
def _database(*, create: bool = False) -> Iterator:
    from inferhub.store import migrate
    from inferhub.store.database import Database

    with _database_url(create=create) as url:
        migrate.upgrade(url)
        db = Database(url)
        try:
            yield db
        finally:
            db.dispose()


# -- migrate -------------------------------------------------------------------------------------


@migrate_app.command("upgrade")
def migrate_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply migrations up to REVISION (default: head); creates the embedded database if there is none."""
    from inferhub.store import migrate

    with _database_url(create=True) as url:
        migrate.upgrade(url, revision)
        typer.echo(f"database at revision {migrate.current_revision(url)}")


@migrate_app.command("downgrade")
def migrate_downgrade(revision: str = typer.Argument("-1")) -> None:
    """Revert migrations down to REVISION (default: one step; 'base' removes every table)."""
    from inferhub.store import migrate

    with _database_url() as url:
        migrate.downgrade(url, revision)
        typer.echo(f"database at revision {migrate.current_revision(url) or 'base'}")


@migrate_app.command("current")
def migrate_current() -> None:
    """Show the applied and the latest revision."""
    from inferhub.store import migrate

    with _database_url() as url:
        current = migrate.current_revision(url)
        head = migrate.head_revision(url)
        state = "up to date" if current == head else "needs `inferhub migrate upgrade`"
        typer.echo(f"current: {current or 'base'}  head: {head}  ({state})")


# -- backends ------------------------------------------------------------------------------------


def _print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) if rows else len(c) for c in columns}
    typer.echo("  ".join(c.upper().ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def _embedded_backends(settings: Settings) -> list[dict]:
    """The embedded models `inferhub serve` runs with these settings (they are not rows of llm_backends)."""
    if not settings.local_models:
        return []
    chat = "llama.cpp, " + (str(settings.local_chat_model_path) if settings.local_chat_model_path
                            else "SmolLM2-135M-Instruct")  # fmt: skip
    return [
        {"id": f"local:{settings.local_chat_model}", "model_name": settings.local_chat_model,
         "backend_type": "llamacpp", "endpoint_url": f"embedded ({chat})", "enabled": True, "source": "embedded"},
        {"id": f"local:{settings.local_embedding_model}", "model_name": settings.local_embedding_model,
         "backend_type": "embedded", "endpoint_url": "embedded (sentence-transformers, 384 dimensions)",
         "enabled": True, "source": "embedded"},
    ]  # fmt: skip


@backends_app.command("list")
def backends_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the registered backends with their running stats, and the embedded models `serve` runs."""
    from inferhub.store.backends import BackendRepository

    with _database() as db:
        rows = [b.public() for b in BackendRepository(db).list()]
    rows += _embedded_backends(_settings())
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    _print_table(rows, ["id", "model_name", "backend_type", "endpoint_url", "enabled", "total_requests",
                        "total_errors", "avg_latency_ms", "avg_tokens_per_sec"])  # fmt: skip


@backends_app.command("add")
def backends_add(
    model_name: Annotated[str, typer.Argument(help="The model name clients ask for.")],
    endpoint_url: Annotated[str, typer.Argument(help="Base URL, e.g. http://10.0.0.5:11434")],
    backend_type: Annotated[str, typer.Option("--type", help="openai|ollama|tei|llamacpp|vllm|mlx")] = "openai",
    upstream_model: Annotated[str | None, typer.Option(help="Model name on the engine, if different.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Default max_tokens.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Default temperature.")] = None,
    timeout: Annotated[float, typer.Option(help="Upstream timeout in seconds.")] = 120.0,
    description: Annotated[str, typer.Option()] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it disabled.")] = False,
    api_key: Annotated[str | None, typer.Option(help="Upstream API key (stored encrypted).")] = None,
    capability: Annotated[
        list[str] | None,
        typer.Option(
            "--capability", help="An operation it serves: chat|completions|embeddings (repeat; default: by --type)."
        ),
    ] = None,
) -> None:
    """Register a backend serving MODEL_NAME at ENDPOINT_URL."""
    from pydantic import ValidationError

    from inferhub.errors import Conflict
    from inferhub.store.backends import BackendRepository

    try:
        config = BackendConfig(
            model_name=model_name, endpoint_url=endpoint_url.rstrip("/"), backend_type=backend_type,
            upstream_model=upstream_model, max_tokens=max_tokens, temperature_default=temperature,
            timeout_seconds=timeout, description=description, enabled=not disabled, api_key=api_key,
            capabilities=capability or None,
        )  # fmt: skip
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _fail(f"{'.'.join(map(str, error['loc']))}: {error['msg']} (got {error.get('input')!r})") from None
    if not config.endpoint_url.startswith(("http://", "https://")):
        raise _fail(f"endpoint URL must start with http:// or https://, got {endpoint_url!r}")
    with _database() as db:
        try:
            record = BackendRepository(db, _secret_box() if api_key else None).add(config, source="cli")
        except Conflict:
            raise _fail(f"a backend for {model_name} at {endpoint_url} already exists") from None
    typer.echo(f"added backend {record.id}: {record.model_name} -> {record.endpoint_url} ({record.backend_type})")
    if record.endpoint_url != endpoint_url.rstrip("/"):
        typer.echo(f"note: stored as {record.endpoint_url}, the engine's root: Inferhub adds /v1/... itself")


def _set_enabled(backend_id: int, enabled: bool) -> None:
    from inferhub.store.backends import BackendRepository

    with _database() as db:
        record = BackendRepository(db).update(backend_id, {"enabled": enabled})
    if record is None:
        raise _fail(f"no backend with id {backend_id}")
    typer.echo(f"backend {backend_id} {'enabled' if enabled else 'disabled'}")


@backends_app.command("enable")
def backends_enable(backend_id: int) -> None:
    """Put a backend back into rotation."""
    _set_enabled(backend_id, True)


@backends_app.command("disable")
def backends_disable(backend_id: int) -> None:
    """Take a backend out of rotation (kept in the registry)."""
    _set_enabled(backend_id, False)


@backends_app.command("remove")
def backends_remove(backend_id: int) -> None:
    """Delete a backend from the registry."""
    from inferhub.store.backends import BackendRepository

    with _database() as db:
        if not BackendRepository(db).remove(backend_id):
            raise _fail(f"no backend with id {backend_id}")
    typer.echo(f"removed backend {backend_id}")


# -- keys ----------------------------------------------------------------------------------------


def _limits(values: list[str] | None, *, allow_none: bool = False) -> dict:
    """``--limit NAME=NUMBER`` options as a dict; with ``allow_none``, ``NAME=none`` maps NAME to None."""
    out: dict = {}
    for item in values or []:
        name, _, value = item.partition("=")
        value = value.strip()
        if allow_none and value.lower() in ("none", "null", ""):
            out[name.strip()] = None
            continue
        try:
            out[name.strip()] = float(value) if "." in value else int(value)
        except ValueError:
            hint = "NAME=NUMBER or NAME=none" if allow_none else "NAME=NUMBER"
            raise _fail(f"--limit expects {hint}, got {item!r}") from None
    return out


def _merged_limits(current: dict, changes: list[str] | None, clear: bool) -> dict | None:
    """The limits after ``--clear-limits`` and ``--limit`` (NAME=none removes one); None if unchanged."""
    if not changes and not clear:
        return None
    merged = {} if clear else dict(current)
    for name, value in _limits(changes, allow_none=True).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _moment(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _fail(f"--expires-at expects an ISO date or datetime, got {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="What the key is for, e.g. 'billing-app'.")],
    scope: Annotated[list[str] | None, typer.Option("--scope", help="inference (default), jobs, rag, admin.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant name or id that owns the key.")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Allowed model glob (repeatable).")] = None,
    limit: Annotated[list[str] | None, typer.Option("--limit", help="e.g. rpm=60, tpm=100000, daily_cost=5")] = None,
    expires_in_days: Annotated[int | None, typer.Option(help="Expire after this many days.")] = None,
) -> None:
    """Create a key. The key is printed once; only its hash is stored."""
    from inferhub.store.keys import KeyRepository

    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    with _database() as db:
        tenant_id = _tenant_id(db, tenant) if tenant else None
        try:
            plaintext, record = KeyRepository(db).create(
                name, tuple(scope or ["inference"]), expires_at=expires_at, tenant_id=tenant_id,
                allowed_models=tuple(model or ()), limits=_limits(limit),
            )  # fmt: skip
        except ValueError as exc:
            raise _fail(str(exc)) from None
    typer.echo(plaintext)
    typer.echo(f"created key {record.id} ({record.prefix}…, scopes: {', '.join(record.scopes)}); "
               "store it now, it is not shown again", err=True)  # fmt: skip


@keys_app.command("list")
def keys_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List keys (prefixes only; keys themselves are never stored)."""
    from inferhub.store.keys import KeyRepository

    with _database() as db:
        records = KeyRepository(db).list()
    rows = [r.public() | {"status": "active" if r.active else ("revoked" if r.revoked_at else "expired"),
                          "scopes": ",".join(r.scopes)} for r in records]  # fmt: skip
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_table(rows, ["id", "name", "prefix", "scopes", "status", "created_at", "expires_at"])


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's id or prefix.")]) -> None:
    """Revoke a key; it is refused from the next request on."""
    from inferhub.store.keys import KeyRepository

    with _database() as db:
        record = KeyRepository(db).revoke(key)
    if record is None:
        raise _fail(f"no single key with id or prefix {key!r}")
    typer.echo(f"revoked key {record.id} ({record.prefix}…)")


_GRACE_SECONDS = typer.Option(help="How long the old key keeps working, in seconds.", min=0, max=90 * 86400)
_SET_LIMIT = typer.Option("--limit", help="Set a limit (repeatable), e.g. rpm=60 or weight=3; rpm=none removes it.")
_CLEAR_LIMITS = typer.Option("--clear-limits", help="Remove every limit first.")
_STORE_PAYLOADS = typer.Option("--store-payloads/--no-store-payloads",
                               help="Keep prompts and completions in the request log.")  # fmt: skip


@keys_app.command("rotate")
def keys_rotate(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")],
    grace_seconds: Annotated[int, _GRACE_SECONDS] = 86400,
) -> None:
    """Create a new key with the same settings; the old one keeps working for the grace period, then expires.

    The new key is printed once. Deploy it, then revoke the old one early with `keys revoke` if you like.
    """
    from inferhub.store.keys import KeyRepository

    with _database() as db:
        repo = KeyRepository(db)
        old = repo.find(key)
        if old is None:
            raise _fail(f"no single key with id or prefix {key!r}")
        rotated = repo.rotate(old.id, grace_seconds, actor="cli")
    if rotated is None:
        raise _fail(f"no single key with id or prefix {key!r}")
    plaintext, new, old = rotated
    typer.echo(plaintext)
    ends = old.expires_at.isoformat() if old.expires_at else "never"
    typer.echo(f"created key {new.id} ({new.prefix}…) with the settings of key {old.id} ({old.prefix}…), "
               f"which now expires at {ends}; store the new key now, it is not shown again", err=True)  # fmt: skip


@keys_app.command("update")
def keys_update(
    key: Annotated[str, typer.Argument(help="The key's id or prefix.")],
    name: Annotated[str | None, typer.Option(help="A new name.")] = None,
    scope: Annotated[list[str] | None, typer.Option("--scope", help="Replace the scopes (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="Replace the allowed model globs.")] = None,
    all_models: Annotated[bool, typer.Option("--all-models", help="Allow every model.")] = False,
    limit: Annotated[list[str] | None, _SET_LIMIT] = None,
    clear_limits: Annotated[bool, _CLEAR_LIMITS] = False,
    expires_in_days: Annotated[int | None, typer.Option(help="Expire this many days from now.", min=1)] = None,
    expires_at: Annotated[str | None, typer.Option(help="Expire at this ISO date or datetime (UTC if naive).")] = None,
    no_expiry: Annotated[bool, typer.Option("--no-expiry", help="Never expire.")] = False,
    priority: Annotated[int | None, typer.Option(help="Fair-queue priority, -100..100.", min=-100, max=100)] = None,
) -> None:
    """Change a key's name, scopes, allowed models, limits, expiry or priority; the next request sees it."""
    from inferhub.store.keys import KeyRepository

    if sum((expires_in_days is not None, expires_at is not None, no_expiry)) > 1:
        raise _fail("give at most one of --expires-in-days, --expires-at and --no-expiry")
    if model and all_models:
        raise _fail("give either --model or --all-models")
    with _database() as db:
        repo = KeyRepository(db)
        record = repo.find(key)
        if record is None:
            raise _fail(f"no single key with id or prefix {key!r}")
        changes: dict = {}
        if name is not None:
            changes["name"] = name
        if scope:
            changes["scopes"] = list(scope)
        if model or all_models:
            changes["allowed_models"] = list(model or ())
        limits = _merged_limits(record.limits, limit, clear_limits)
        if limits is not None:
            changes["limits"] = limits
        if expires_in_days is not None:
            changes["expires_at"] = datetime.now(UTC) + timedelta(days=expires_in_days)
        elif expires_at is not None:
            changes["expires_at"] = _moment(expires_at)
        elif no_expiry:
            changes["expires_at"] = None
        if priority is not None:
            changes["priority"] = priority
        if not changes:
            raise _fail("nothing to change: give at least one option (see --help)")
        try:
            updated = repo.update(record.id, changes, actor="cli")
        except ValueError as exc:
            raise _fail(str(exc)) from None
    assert updated is not None
    typer.echo(f"updated key {updated.id} ({updated.prefix}…): " + json.dumps(
        {k: updated.public()[k] for k in changes}, default=str))  # fmt: skip


# -- tenants -------------------------------------------------------------------------------------


def _tenant_id(db, name_or_id: str) -> int:
    from inferhub.store.tenants import TenantRepository

    repo = TenantRepository(db)
    if name_or_id.isdigit():
        record = repo.get(int(name_or_id)) if int(name_or_id) < 2**31 else None
    else:
        record = repo.get_by_name(name_or_id)
    if record is None:
        raise _fail(f"no tenant {name_or_id!r}")
    return record.id


@tenants_app.command("create")
def tenants_create(
    name: str,
    description: Annotated[str, typer.Option()] = "",
    limit: Annotated[list[str] | None, typer.Option("--limit", help="e.g. rpm=600, monthly_cost=100")] = None,
) -> None:
    """Create a tenant."""
    from inferhub.errors import Conflict
    from inferhub.store.tenants import TenantRepository

    with _database() as db:
        try:
            record = TenantRepository(db).create(name, description=description, limits=_limits(limit), actor="cli")
        except ValueError as exc:
            raise _fail(str(exc)) from None
        except Conflict:
            raise _fail(f"tenant {name!r} already exists") from None
    typer.echo(f"created tenant {record.id}: {record.name}")


@tenants_app.command("update")
def tenants_update(
    name_or_id: str,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    limit: Annotated[list[str] | None, _SET_LIMIT] = None,
    clear_limits: Annotated[bool, _CLEAR_LIMITS] = False,
    store_payloads: Annotated[bool | None, _STORE_PAYLOADS] = None,
) -> None:
    """Change a tenant's limits (and fair-queue weight), description or whether its payloads are stored."""
    from inferhub.store.tenants import TenantRepository

    with _database() as db:
        repo = TenantRepository(db)
        tenant_id = _tenant_id(db, name_or_id)
        current = repo.get(tenant_id)
        assert current is not None
        changes: dict = {}
        if description is not None:
            changes["description"] = description
        limits = _merged_limits(current.limits, limit, clear_limits)
        if limits is not None:
            changes["limits"] = limits
        if store_payloads is not None:
            changes["store_payloads"] = store_payloads
        if not changes:
            raise _fail("nothing to change: give at least one option (see --help)")
        try:
            updated = repo.update(tenant_id, changes, actor="cli")
        except ValueError as exc:
            raise _fail(str(exc)) from None
    assert updated is not None
    typer.echo(f"updated tenant {updated.id} ({updated.name}): " + json.dumps(
        {k: updated.public()[k] for k in changes}))  # fmt: skip


@tenants_app.command("list")
def tenants_list(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List tenants with their limits."""
    from inferhub.store.tenants import TenantRepository

    with _database() as db:
        rows = [t.public() for t in TenantRepository(db).list()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    _print_table([r | {"limits": json.dumps(r["limits"])} for r in rows], ["id", "name", "limits", "description"])


@tenants_app.command("delete")
def tenants_delete(name_or_id: str) -> None:
    """Delete a tenant and its keys (usage records are kept for billing)."""
    from inferhub.store.tenants import TenantRepository

    with _database() as db:
        tenant_id = _tenant_id(db, name_or_id)
        TenantRepository(db).delete(tenant_id, actor="cli")
    typer.echo(f"deleted tenant {tenant_id}")


# -- admin users ---------------------------------------------------------------------------------


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="platform_admin or tenant_admin")] = "platform_admin",
    tenant: Annotated[str | None, typer.Option(help="Tenant of a tenant_admin.")] = None,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Create an admin user (password hashed with argon2)."""
    from inferhub.errors import Conflict
    from inferhub.store.tenants import AdminUserRepository

    with _database() as db:
        tenant_id = _tenant_id(db, tenant) if tenant else None
        try:
            record = AdminUserRepository(db).create(username, password, role, tenant_id, actor="cli")
        except ValueError as exc:
            raise _fail(str(exc)) from None
        except Conflict:
            raise _fail(f"user {username!r} already exists") from None
    typer.echo(f"created {record.role} {record.username} (id {record.id})")


@users_app.command("set-password")
def users_set_password(
    username: str,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Give an admin user a new password (for a lost bootstrap password: `set-password admin`)."""
    from inferhub.store.tenants import AdminUserRepository

    with _database() as db:
        repo = AdminUserRepository(db)
        user = next((u for u in repo.list() if u.username == username), None)
        if user is None:
            raise _fail(f"no admin user {username!r} (see `inferhub admin-users create`)")
        try:
            repo.update(user.id, {"password": password}, actor="cli")
        except ValueError as exc:
            raise _fail(str(exc)) from None
    typer.echo(f"new password set for {username}")


# -- secrets -------------------------------------------------------------------------------------


@secrets_app.command("generate")
def secrets_generate() -> None:
    """Print a new random master key (for INFERHUB_SECRET_KEY)."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


@secrets_app.command("rotate")
def secrets_rotate(
    new_key: Annotated[str, typer.Option("--new-key", help="The new master key (see `secrets generate`).")],
) -> None:
    """Re-encrypt every stored upstream credential under NEW_KEY.

    The current key is read as usual (INFERHUB_SECRET_KEY, INFERHUB_SECRET_KEY_FILE or INFERHUB_HOME/secret.key).
    Afterwards set INFERHUB_SECRET_KEY to the new key (or "NEW,OLD" during a rolling restart) everywhere.
    """
    from inferhub.store.backends import rotate_credentials
    from inferhub.store.secrets import SecretBox, SecretError, load_master_keys

    settings = _settings()
    try:
        current = load_master_keys(settings.secret_key, settings.secret_key_file, settings.home.resolve())
        box = SecretBox(load_master_keys(new_key, None, settings.home.resolve()) + current)
    except SecretError as exc:
        raise _fail(str(exc)) from None
    with _database() as db:
        count = rotate_credentials(db, box)
    key_file = settings.secret_key_file or (settings.home.resolve() / "secret.key")
    if not settings.secret_key and key_file.exists():
        key_file.write_text(new_key + "\n")
        typer.echo(f"re-encrypted {count} credential(s); {key_file} now holds the new key")
    else:
        typer.echo(f"re-encrypted {count} credential(s); now set INFERHUB_SECRET_KEY to the new key")


# -- operations: backup, restore, doctor, models (the work is in inferhub.ops) ---------------------

_PG_BIN_DIR = typer.Option(
    "--pg-bin-dir", envvar="INFERHUB_PG_BIN_DIR", help="pg_dump/pg_restore directory (default: embedded PostgreSQL 18)."
)


_ENV_FILE = typer.Option(
    "--env-file", envvar="INFERHUB_ENV_FILE", help="The server's env file (systemd: /etc/inferhub/inferhub.env)."
)


def _config_files(env_file: str, skip_env_file: bool = False):
    from pathlib import Path

    from inferhub.ops.config_files import ConfigFiles

    return ConfigFiles(_settings().config_file.resolve(), None if skip_env_file else Path(env_file).resolve())


@app.command()
def backup(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Default: ./inferhub-backup-<UTC>.dump")] = None,
    pg_bin_dir: Annotated[str | None, _PG_BIN_DIR] = None,
    env_file: Annotated[str, _ENV_FILE] = ".env",
    no_env_file: Annotated[bool, typer.Option("--no-env-file", help="Leave the env file out.")] = False,
) -> None:
    """Dump the database, and save inferhub.yaml and the env file beside it (.config.tar, 0600).

    The master key file is not included; the env file is, and may set INFERHUB_SECRET_KEY (a warning says so).
    """
    from pathlib import Path

    from inferhub.ops import OpsError
    from inferhub.ops import backup as ops_backup
    from inferhub.ops.config_files import companion_path, save_config_files

    files = _config_files(env_file, no_env_file)
    target = Path(output or ops_backup.default_backup_name())
    if companion_path(target).exists():
        raise _fail(f"{companion_path(target)} already exists: choose another --output or move the old file away")
    with _database_url() as url:
        try:
            ops_backup.backup(url, target, bin_dir=Path(pg_bin_dir) if pg_bin_dir else None, echo=typer.echo)
            save_config_files(files, target, typer.echo)
        except OpsError as exc:
            raise _fail(str(exc)) from None


@app.command()
def restore(
    file: Annotated[str, typer.Argument(help="A file made by `inferhub backup`.")],
    yes: Annotated[bool, typer.Option("--yes", help="Replace a database that already holds data.")] = False,
    pg_bin_dir: Annotated[str | None, _PG_BIN_DIR] = None,
    env_file: Annotated[str, _ENV_FILE] = ".env",
    database_only: Annotated[bool, typer.Option("--database-only", help="Leave the config files as they are.")] = False,
) -> None:
    """Restore a backup into the configured database (the embedded one is created if there is none), migrate
    it, and tell running replicas to reload.

    inferhub.yaml and the env file saved beside it are put back (0600); a different file there is kept as
    NAME.before-restore.
    """
    from pathlib import Path

    from inferhub.ops import OpsError
    from inferhub.ops import backup as ops_backup
    from inferhub.ops.config_files import restore_config_files

    files = _config_files(env_file)
    with _database_url(create=True) as url:
        try:
            ops_backup.restore(url, Path(file), yes=yes, bin_dir=Path(pg_bin_dir) if pg_bin_dir else None,
                               echo=typer.echo)  # fmt: skip
            if not database_only:
                restore_config_files(files, Path(file), typer.echo)
        except OpsError as exc:
            raise _fail(str(exc)) from None


@app.command()
def doctor() -> None:
    """Check configuration, home, database, Redis, backends, master key, disk and local models."""
    from inferhub.ops.doctor import run_doctor

    raise typer.Exit(run_doctor(typer.echo))


models_app = typer.Typer(help="Models on the engines: pull onto Ollama nodes, warm before traffic.",
                         no_args_is_help=True)  # fmt: skip
app.add_typer(models_app, name="models")


def _model_targets(model: str, types: tuple[str, ...], **options):
    from inferhub.ops import OpsError
    from inferhub.ops.models import load_targets

    with _database() as db:
        try:
            return load_targets(db, model, types=types, secret_box=_secret_box, **options)
        except OpsError as exc:
            raise _fail(str(exc)) from None


@models_app.command("pull")
def models_pull(
    model: Annotated[str, typer.Argument(help="The model name clients use (aliases are followed).")],
    backend_model: Annotated[str | None, typer.Option(help="Name to pull, if the engine's differs.")] = None,
    all_nodes: Annotated[bool, typer.Option("--all-nodes", help="Every Ollama node, not just MODEL's.")] = False,
    timeout: Annotated[float, typer.Option(help="Longest silence between progress lines, seconds.")] = 600.0,
) -> None:
    """Pull MODEL on every Ollama node serving it (POST /api/pull), showing progress per node."""
    from inferhub.ops.models import pull

    targets = _model_targets(model, ("ollama",), backend_model=backend_model, all_nodes=all_nodes)
    raise typer.Exit(pull(targets, typer.echo, timeout=timeout))


@models_app.command("warm")
def models_warm(
    model: Annotated[str, typer.Argument(help="The model name clients use (aliases are followed).")],
    keep_alive: Annotated[str, typer.Option(help="Ollama: how long the model stays loaded.")] = "30m",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for each engine.")] = 300.0,
) -> None:
    """Load MODEL on every backend serving it (Ollama: empty generate with keep_alive; others: 1 token)."""
    from inferhub.ops.models import OPENAI_TYPES, warm

    targets = _model_targets(model, ("ollama", "tei", *OPENAI_TYPES))
    raise typer.Exit(warm(targets, typer.echo, keep_alive=keep_alive, timeout=timeout))


def main() -> None:  # pragma: no cover
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
def bench(ctx: typer.Context) -> None:
    """Benchmarks (docs/performance.md): run, overhead, leak, workers, profile, upstream, all; --help for more."""
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]  # src/inferhub/cli.py -> the repository
    if not (root / "bench" / "harness.py").is_file():
        raise _fail("the benchmark harness ships with the source tree (bench/): run this from a clone")
    sys.path.insert(0, str(root))
    from bench.harness import main

    raise typer.Exit(main(list(ctx.args)))
