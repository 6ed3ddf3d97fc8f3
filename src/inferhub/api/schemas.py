"""Request bodies that more than one caller validates: the admin API and the dashboard's forms.

Not a route module, so ``ui/`` may import it (tests/test_layering.py: ui/ imports no ``*_routes`` module).
"""

from __future__ import annotations

from pydantic import Field, field_validator

from inferhub.api._params import INT_MAX, NAME_LENGTH, AdminBody
from inferhub.settings import BackendType, Operation

URL_LENGTH = 500  # llm_backends.endpoint_url is varchar(500)


class BackendPatch(AdminBody):
    """Fields to change. ``null`` clears a field that may be empty (a credential, ``upstream_model``, the
    optional limits); the others cannot be null (their columns are ``NOT NULL``): a 400 names them."""

    api_key: str | None = Field(default=None, repr=False)
    basic_auth_username: str | None = None
    basic_auth_password: str | None = Field(default=None, repr=False)
    headers: dict[str, str] | None = Field(default=None, repr=False)
    clear_credentials: bool = Field(default=None)
    model_name: str = Field(default=None, min_length=1, max_length=NAME_LENGTH)
    backend_type: BackendType = Field(default=None)
    endpoint_url: str = Field(default=None, max_length=URL_LENGTH)
    upstream_model: str | None = Field(default=None, max_length=NAME_LENGTH)
    enabled: bool = Field(default=None)
    max_tokens: int | None = Field(default=None, ge=1, le=INT_MAX)
    temperature_default: float | None = Field(default=None, ge=0, le=2)
    timeout_seconds: float = Field(default=None, gt=0, le=86400)
    description: str = Field(default=None)
    weight: int = Field(default=None, ge=1, le=1000)
    priority: int = Field(default=None, ge=-INT_MAX, le=INT_MAX)
    max_concurrency: int | None = Field(default=None, ge=1, le=INT_MAX)
    draining: bool = Field(default=None)
    discover_models: bool = Field(default=None)
    capabilities: list[Operation] | None = Field(default=None, min_length=1)  # null: the type's default

    @field_validator("capabilities", mode="after")
    @classmethod
    def _sorted_capabilities(cls, value: list[str] | None) -> list[str] | None:
        return sorted(set(value)) if value is not None else None
