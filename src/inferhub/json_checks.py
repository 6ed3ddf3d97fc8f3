"""Checks of a parsed JSON body's values, shared by every protocol's validation (the chat routes in
``api/`` and the translations in ``protocols/``), so each client gets the same 400: its message names
the field (``messages[2].content: expected a string, got an array``) and ``param`` holds it.

Imports nothing of Inferhub but ``errors``: the pure translations may use it (``tests/test_layering.py``).
"""

from __future__ import annotations

from typing import Any

from inferhub.errors import InvalidRequest

__all__ = ["expect_object", "expect_string", "invalid", "json_type", "missing", "unsupported"]

_JSON_TYPES = {
    dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
    bool: "a boolean", type(None): "null",
}  # fmt: skip


def json_type(value: Any) -> str:
    """How an error message names a JSON value's type."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def invalid(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, code="invalid_value")


def missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: this field is required", param=param, code="missing_required_parameter")


def unsupported(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {message}", param=param, code="unsupported_value")


def expect_string(value: Any, param: str, *, non_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise invalid(param, f"expected a string, got {json_type(value)}")
    if non_empty and not value:
        raise invalid(param, "must not be empty")
    return value


def expect_object(value: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(param, f"expected an object, got {json_type(value)}")
    return value
