"""First-start chores and what start-up prints for a person reading the terminal.

On the first start Inferhub creates a bootstrap admin API key and the dashboard's platform admin
``admin`` (its password generated unless ``INFERHUB_BOOTSTRAP_ADMIN_PASSWORD`` gives one); each
generated secret is printed once and stored only hashed. Every start then says where the API, the
dashboard and the API docs listen and how to run the CLI against this install.
"""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from inferhub.settings import Settings
from inferhub.store.admin_service import AdminService
from inferhub.store.keys import KeyRepository

BOOTSTRAP_USER = "admin"


def ensure_bootstrap_key(keys: KeyRepository, settings: Settings) -> str | None:
    """Make sure an admin key exists. Returns a newly generated key to print once, else None."""
    from inferhub.tenancy.keys import hash_key

    if settings.api_key:
        if keys.find_by_hash(hash_key(settings.api_key)) is None:
            keys.create("bootstrap (INFERHUB_API_KEY)", ("admin", "inference"), key=settings.api_key)
        return None
    if keys.count() == 0:
        plaintext, _ = keys.create("bootstrap admin", ("admin", "inference"))
        return plaintext
    return None


def ensure_bootstrap_admin(admin: AdminService, settings: Settings) -> str | None:
    """Create the platform admin ``admin`` when there is none. Returns a generated password to print once.

    With ``INFERHUB_BOOTSTRAP_ADMIN_PASSWORD`` the user gets that password (created if no user ``admin``
    exists, as before) and nothing is printed. Without it the user is created only while no platform admin
    exists at all, with a random password, so a restart neither prints a new one nor resets it.
    """
    users = admin.users.list()
    if any(u.username == BOOTSTRAP_USER for u in users):
        return None
    if settings.bootstrap_admin_password:
        admin.users.create(BOOTSTRAP_USER, settings.bootstrap_admin_password, "platform_admin", None,
                           actor="bootstrap")  # fmt: skip
        return None
    if any(u.role == "platform_admin" for u in users):
        return None
    password = secrets.token_urlsafe(15)  # 20 characters, about 120 bits
    admin.users.create(BOOTSTRAP_USER, password, "platform_admin", None, actor="bootstrap")
    return password


def _base_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    return f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}"


def print_bootstrap_key(key: str) -> None:
    print(
        "\n"
        "  Inferhub created a bootstrap admin API key. It is shown only this once:\n\n"
        f"      {key}\n\n"
        "  Use it as 'Authorization: Bearer <key>'. Create more with `inferhub keys create`.\n",
        flush=True,
    )


def print_bootstrap_password(password: str, settings: Settings) -> None:
    print(
        "\n"
        f"  Inferhub created the dashboard's platform admin user. Its password is shown only this once:\n\n"
        f"      user:     {BOOTSTRAP_USER}\n"
        f"      password: {password}\n\n"
        f"  Log in at {_base_url(settings.host, settings.port)}/ui. Lost it? "
        f"`inferhub admin-users set-password {BOOTSTRAP_USER}` sets a new one.\n",
        flush=True,
    )


def _cli_command() -> str:
    """How to run this install's ``inferhub``: relative to the working directory when it is below it."""
    command = Path(sys.argv[0]) if sys.argv and Path(sys.argv[0]).name == "inferhub" else None
    if command is None or not command.exists():
        command = Path(sys.executable).parent / "inferhub"
    command = command.absolute()
    try:
        return str(command.relative_to(Path.cwd()))
    except ValueError:
        return str(command)


def _listening(settings: Settings, host: str, port: int) -> dict[str, str]:
    base = _base_url(host, port)
    home = settings.home.resolve()
    where = {
        "api_openai": f"{base}/v1",
        "api_ollama": base,
        "dashboard": f"{base}/ui",
        "api_docs": f"{base}/docs",
        "cli": f"{_cli_command()} --help",
    }
    if not settings.database_url:
        where["cli_home"] = f"INFERHUB_HOME={home} or --home {home}"
    return where


def startup_banner(settings: Settings, host: str, port: int) -> str:
    """Where everything listens and how to run the CLI, in plain words."""
    where = _listening(settings, host, port)
    openai_url, ollama_url = where["api_openai"], where["api_ollama"]
    everywhere = " (all interfaces)" if host in ("0.0.0.0", "::", "") else ""
    lines = [
        "",
        f"  Inferhub is listening on {host}:{port}{everywhere}:",
        f'      API (OpenAI)   {openai_url}     e.g. OpenAI(base_url="{openai_url}", api_key=KEY)',
        f'      API (Ollama)   {ollama_url}        e.g. ollama.Client(host="{ollama_url}", headers=...)',
        f"      Dashboard      {where['dashboard']}",
        f"      API docs       {where['api_docs']}",
        f"  CLI: {where['cli']}   (not on PATH; in the clone `make cli ARGS='keys list'` runs it too)",
    ]
    if "cli_home" in where:
        lines.append(f"       It works on the database under {settings.home.resolve()}: from another directory give it")
        lines.append(f"       {where['cli_home']}.")
    return "\n".join(lines) + "\n"


def print_startup_banner(settings: Settings, host: str, port: int) -> None:
    """In plain words on a terminal (``make run``); as one JSON log line otherwise, so a log collector
    reading a service's output (systemd, Compose, Kubernetes) still gets nothing but JSON lines."""
    if settings.worker_child:  # the supervisor of --workers N prints it once
        return
    if sys.stdout.isatty():
        print(startup_banner(settings, host, port), flush=True)
        return
    import structlog

    structlog.get_logger("inferhub").info("listening", host=host, port=port, **_listening(settings, host, port))
