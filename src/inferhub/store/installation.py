"""The installation's id: made by migration 0008, read once at start-up (never on the request path)."""

from __future__ import annotations

from sqlalchemy import select

from inferhub.store.database import Database
from inferhub.store.models import InstallationRow


def installation_id(db: Database) -> str:
    """The id of the installation this database belongs to; a restored backup keeps it."""
    with db.session() as session:
        return session.scalars(select(InstallationRow.id).order_by(InstallationRow.created_at).limit(1)).one()
