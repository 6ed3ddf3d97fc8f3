"""Persistence: SQLAlchemy models, repositories and Alembic migrations. Knows nothing of HTTP."""
