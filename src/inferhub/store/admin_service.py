"""AdminService: the repositories the tenancy admin API needs, behind one object handed to the HTTP layer."""

from __future__ import annotations

from dataclasses import dataclass

from inferhub.store.database import Database
from inferhub.store.keys import KeyRepository
from inferhub.store.tenants import AdminUserRepository, TenantRepository
from inferhub.store.usage import UsageRepository


@dataclass
class AdminService:
    tenants: TenantRepository
    keys: KeyRepository
    users: AdminUserRepository
    usage: UsageRepository

    @classmethod
    def for_database(cls, db: Database) -> AdminService:
        return cls(TenantRepository(db), KeyRepository(db), AdminUserRepository(db), UsageRepository(db))
