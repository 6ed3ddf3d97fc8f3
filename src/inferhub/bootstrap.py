"""First-start chores: the bootstrap admin key (printed once) and the bootstrap admin user."""

from __future__ import annotations

from inferhub.settings import Settings
from inferhub.store.admin_service import AdminService
from inferhub.store.keys import KeyRepository


def ensure_bootstrap_key(keys: KeyRepository, settings: Settings) -> str | None:
    """Make sure an admin key exists. Returns a newly generated key to print once, else None."""
    from inferhub.store.keys import hash_key

    if settings.api_key:
        if keys.find_by_hash(hash_key(settings.api_key)) is None:
            keys.create("bootstrap (INFERHUB_API_KEY)", ("admin", "inference"), key=settings.api_key)
        return None
    if keys.count() == 0:
        plaintext, _ = keys.create("bootstrap admin", ("admin", "inference"))
        return plaintext
    return None


def print_bootstrap_key(key: str) -> None:
    print(
        "\n"
        "  Inferhub created a bootstrap admin API key. It is shown only this once:\n\n"
        f"      {key}\n\n"
        "  Use it as 'Authorization: Bearer <key>'. Create more with `inferhub keys create`.\n",
        flush=True,
    )


def ensure_bootstrap_admin(admin: AdminService, settings: Settings) -> None:
    """``INFERHUB_BOOTSTRAP_ADMIN_PASSWORD`` creates the platform admin user ``admin`` if it does not exist."""
    if not settings.bootstrap_admin_password:
        return
    if not any(u.username == "admin" for u in admin.users.list()):
        admin.users.create("admin", settings.bootstrap_admin_password, "platform_admin", None, actor="bootstrap")

