"""ConfigService: the configuration operations the admin API offers, over the repositories.

Synchronous (the API runs it in a worker thread); every change is audited and
NOTIFYs every replica in the same transaction.
"""

from __future__ import annotations

from typing import Any

from inferhub.fleet.records import BackendRecord, ModelRoute
from inferhub.settings import BackendConfig, ModelRouteConfig
from inferhub.store._audit import AuditRepository
from inferhub.store.backends import BackendRepository
from inferhub.store.database import Database
from inferhub.store.routes import RouteRepository


class ConfigService:
    def __init__(self, db: Database, box=None) -> None:
        self.db = db
        self.backends = BackendRepository(db, box)
        self.routes = RouteRepository(db)
        self.audit = AuditRepository(db)

    def list_backends(self) -> list[BackendRecord]:
        return self.backends.list()

    def get_backend(self, backend_id: int) -> BackendRecord | None:
        return self.backends.get(backend_id)

    def add_backend(self, config: BackendConfig, actor: str) -> BackendRecord:
        return self.backends.add(config, source="api", actor=actor)

    def update_backend(self, backend_id: int, changes: dict[str, Any], actor: str, action: str = "update"):
        return self.backends.update(backend_id, changes, actor=actor, action=action)

    def remove_backend(self, backend_id: int, actor: str) -> bool:
        return self.backends.remove(backend_id, actor=actor)

    def list_routes(self) -> list[ModelRoute]:
        return self.routes.list_routes()

    def set_route(self, model: str, config: ModelRouteConfig, actor: str) -> ModelRoute:
        return self.routes.set_route(model, config, actor=actor)

    def delete_route(self, model: str, actor: str) -> bool:
        return self.routes.delete_route(model, actor=actor)

    def list_aliases(self) -> dict[str, str]:
        return self.routes.list_aliases()

    def set_alias(self, alias: str, model: str, actor: str) -> None:
        self.routes.set_alias(alias, model, actor=actor)

    def delete_alias(self, alias: str, actor: str) -> bool:
        return self.routes.delete_alias(alias, actor=actor)

    def audit_log(self, **filters: Any) -> list[dict[str, Any]]:
        return self.audit.list(**filters)
