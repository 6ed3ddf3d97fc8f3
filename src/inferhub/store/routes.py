"""Per-model routing (strategy, fallback chain) and model aliases."""

from __future__ import annotations

from sqlalchemy import select

from inferhub.fleet.records import ModelRoute
from inferhub.settings import ModelRouteConfig
from inferhub.store._audit import record_change
from inferhub.store.database import Database
from inferhub.store.models import ModelAliasRow, ModelRouteRow


class RouteRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def list_routes(self) -> list[ModelRoute]:
        with self._db.session() as session:
            return [
                ModelRoute(r.model_name, r.strategy, tuple(r.fallback_models or ()), r.source)
                for r in session.scalars(select(ModelRouteRow).order_by(ModelRouteRow.model_name))
            ]

    def list_aliases(self) -> dict[str, str]:
        with self._db.session() as session:
            return {r.alias: r.model_name for r in session.scalars(select(ModelAliasRow))}

    def set_route(self, model: str, config: ModelRouteConfig, *, actor: str, source: str = "api") -> ModelRoute:
        with self._db.session() as session:
            row = session.get(ModelRouteRow, model)
            before = None
            if row is None:
                row = ModelRouteRow(model_name=model)
                session.add(row)
            else:
                before = {"strategy": row.strategy, "fallbacks": list(row.fallback_models or [])}
            row.strategy = config.strategy
            row.fallback_models = list(config.fallbacks)
            row.source = source
            record_change(session, actor=actor, action="update" if before else "create", entity_type="model_route",
                          entity_id=model, before=before,
                          after={"strategy": config.strategy, "fallbacks": list(config.fallbacks)})  # fmt: skip
            self._db.notify_change(session, "backends")
            return ModelRoute(model, config.strategy, tuple(config.fallbacks), source)

    def delete_route(self, model: str, *, actor: str) -> bool:
        with self._db.session() as session:
            row = session.get(ModelRouteRow, model)
            if row is None:
                return False
            record_change(session, actor=actor, action="delete", entity_type="model_route", entity_id=model,
                          before={"strategy": row.strategy, "fallbacks": list(row.fallback_models or [])})  # fmt: skip
            session.delete(row)
            self._db.notify_change(session, "backends")
            return True

    def set_alias(self, alias: str, model: str, *, actor: str, source: str = "api") -> None:
        with self._db.session() as session:
            row = session.get(ModelAliasRow, alias)
            before = {"model": row.model_name} if row else None
            if row is None:
                row = ModelAliasRow(alias=alias, model_name=model, source=source)
                session.add(row)
            row.model_name = model
            row.source = source
            record_change(session, actor=actor, action="update" if before else "create", entity_type="model_alias",
                          entity_id=alias, before=before, after={"model": model})  # fmt: skip
            self._db.notify_change(session, "backends")

    def delete_alias(self, alias: str, *, actor: str) -> bool:
        with self._db.session() as session:
            row = session.get(ModelAliasRow, alias)
            if row is None:
                return False
            record_change(session, actor=actor, action="delete", entity_type="model_alias", entity_id=alias,
                          before={"model": row.model_name})  # fmt: skip
            session.delete(row)
            self._db.notify_change(session, "backends")
            return True

    def sync_from_config(self, routes: dict[str, ModelRouteConfig], aliases: dict[str, str]) -> None:
        """Rows from ``inferhub.yaml`` are replaced by the file; rows made through the API are kept."""
        with self._db.session() as session:
            for row in session.scalars(select(ModelRouteRow).where(ModelRouteRow.source == "config")):
                if row.model_name not in routes:
                    session.delete(row)
            for row in session.scalars(select(ModelAliasRow).where(ModelAliasRow.source == "config")):
                if row.alias not in aliases:
                    session.delete(row)
            for model, config in routes.items():
                row = session.get(ModelRouteRow, model) or ModelRouteRow(model_name=model)
                row.strategy, row.fallback_models, row.source = config.strategy, list(config.fallbacks), "config"
                session.merge(row)
            for alias, model in aliases.items():
                row = session.get(ModelAliasRow, alias) or ModelAliasRow(alias=alias)
                row.model_name, row.source = model, "config"
                session.merge(row)
            self._db.notify_change(session, "backends")
