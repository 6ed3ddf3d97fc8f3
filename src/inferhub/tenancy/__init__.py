"""Who calls and what they may spend: key, tenant, admin user and usage records, and their policy.

Plain dataclasses and pure functions in ``keys``, ``tenants`` and ``usage``. ``store/`` maps database rows to
them; ``gateway/``, ``api/`` and ``ui/`` read them. Nothing here stores, serves or imports SQLAlchemy.
"""

__all__ = ["keys", "tenants", "usage"]
