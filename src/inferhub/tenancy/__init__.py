"""Who calls and what they may spend: key, tenant, admin user and usage records, and their policy.

Plain dataclasses and pure functions. ``store/`` maps database rows to them; ``gateway/``, ``api/`` and ``ui/``
read them. Nothing here stores, serves or imports SQLAlchemy (``tests/test_layering.py``).
"""

from inferhub.tenancy.keys import (
    ALL_SCOPES,
    KEY_PREFIX,
    LIMIT_NAMES,
    MAX_WEIGHT,
    WEIGHT,
    KeyRecord,
    check_limits,
    check_weight_owner,
    display_prefix,
    fair_queue_weight,
    generate_key,
    hash_key,
)
from inferhub.tenancy.tenants import ROLES, AdminUserRecord, TenantRecord, check_password, check_role
from inferhub.tenancy.usage import GROUPS, Price, UsageRecord, day_start, month_bounds, parse_moment, to_csv

__all__ = [
    "ALL_SCOPES",
    "GROUPS",
    "KEY_PREFIX",
    "LIMIT_NAMES",
    "MAX_WEIGHT",
    "ROLES",
    "WEIGHT",
    "AdminUserRecord",
    "KeyRecord",
    "Price",
    "TenantRecord",
    "UsageRecord",
    "check_limits",
    "check_password",
    "check_role",
    "check_weight_owner",
    "day_start",
    "display_prefix",
    "fair_queue_weight",
    "generate_key",
    "hash_key",
    "month_bounds",
    "parse_moment",
    "to_csv",
]
