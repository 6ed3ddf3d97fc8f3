"""Persistence: SQLAlchemy models, repositories and Alembic migrations. Knows nothing of HTTP.

Public: ``database``, ``models``, ``migrate``, ``migrations`` and one repository module per record kind.
``_audit``, ``_rag_schema`` and ``_usage`` serve only the other store modules.
"""

__all__ = [
    "admin_service",
    "backends",
    "batches",
    "config_service",
    "database",
    "installation",
    "jobs",
    "keys",
    "migrate",
    "migrations",
    "models",
    "notify",
    "rag",
    "rag_fulltext",
    "responses",
    "routes",
    "secrets",
    "tenants",
]
