"""Alembic's migration environment (``env``, loaded by Alembic from ``alembic.ini``) and its ``versions/``."""

__all__ = ["env"]
