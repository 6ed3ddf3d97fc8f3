"""AdminService: the repositories the tenancy admin API needs, behind one object handed to the HTTP layer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from inferhub.store._usage import UsageRepository
from inferhub.store.database import Database
from inferhub.store.keys import KeyRepository
from inferhub.store.tenants import AdminUserRepository, TenantRepository
from inferhub.tenancy.keys import KeyRecord
from inferhub.tenancy.tenants import AdminUserRecord


@dataclass
class AdminService:
    tenants: TenantRepository
    keys: KeyRepository
    users: AdminUserRepository
    usage: UsageRepository

    @classmethod
    def for_database(cls, db: Database) -> AdminService:
        return cls(TenantRepository(db), KeyRepository(db), AdminUserRepository(db), UsageRepository(db))

    def report_changes(self, *, keys: Callable[[KeyRecord], None],
                       users: Callable[[int, AdminUserRecord | None], None]) -> None:  # fmt: skip
        """Hand every key and admin user this process commits to its caches at once.

        NOTIFY still tells every replica; this only spares the replica that made the
        change the wait for its own notification, so the next request here sees it.
        """
        self.keys.on_change = keys
        self.users.on_change = users
