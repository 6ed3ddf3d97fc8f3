"""Errors every endpoint answers with, in the OpenAI shape (or Ollama's on /api/*)."""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """An error a client should see: HTTP status plus an OpenAI-style body."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if code is not None:
            self.code = code
        self.param = param
        self.headers = headers or {}

    def openai_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(APIError):
    status_code = 400
    code = "invalid_request"


class AuthenticationFailed(APIError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(APIError):
    status_code = 403
    error_type = "permission_error"
    code = "insufficient_scope"


class NotFound(APIError):
    status_code = 404
    code = "not_found"


class ModelNotFound(APIError):
    status_code = 404
    code = "model_not_found"


class PayloadTooLarge(APIError):
    status_code = 413
    code = "request_too_large"


class ClientDisconnected(APIError):
    """The client closed the connection before the answer was ready (nginx's 499 "client closed request")."""

    status_code = 499
    code = "client_closed_request"


class UpstreamError(APIError):
    """A backend failed: 502 (bad answer, refused), 503 (none available), 504 (timeout)."""

    status_code = 502
    error_type = "upstream_error"
    code = "backend_error"

    def __init__(self, message: str, *, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.backend = backend

    def openai_body(self) -> dict[str, Any]:
        body = super().openai_body()
        if self.backend:
            body["error"]["backend"] = self.backend
        return body


class BackendRejected(APIError):
    """The engine refused this request (bad input, or an operation it does not serve): the client's
    fault, passed back as a 4xx; it does not count against the backend's health and is not retried."""

    status_code = 400
    code = "backend_rejected"

    def __init__(self, message: str, *, backend: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.backend = backend

    def openai_body(self) -> dict[str, Any]:
        body = super().openai_body()
        if self.backend:
            body["error"]["backend"] = self.backend
        return body


# -- what the store refuses --------------------------------------------------------------------------------
# store/ raises these in place of the driver's errors, so api/ and ui/ never import SQLAlchemy
# (tests/test_layering.py). Routes and pages usually catch them and say what clashed in their own words.

REFUSED_VALUE_MESSAGE = "a value in the request does not fit the database (too long, too large or not valid text)"


class Conflict(APIError):
    """A write broke a uniqueness or reference rule (a duplicate name, an owner that does not exist)."""

    status_code = 409
    code = "conflict"

    def __init__(self, constraint: str | None = None) -> None:
        super().__init__(f"the change conflicts with what is stored ({constraint or 'a database constraint'})")
        self.constraint = constraint


class ValueRefused(InvalidRequest):
    """The database refused a value (a NUL byte, too long, out of range): the request's fault.

    ``reason`` names the kind of refusal (the driver's exception class), never the value: the driver's
    message may quote it, and it may be a credential.
    """

    code = "invalid_value"

    def __init__(self, reason: str) -> None:
        super().__init__(REFUSED_VALUE_MESSAGE)
        self.reason = reason


class PgvectorMissing(RuntimeError):
    """The database has no pgvector extension, so collections (RAG) cannot be created."""
