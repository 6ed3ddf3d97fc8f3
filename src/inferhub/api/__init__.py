"""The HTTP surface only: parse, validate, authenticate, call the gateway's service, shape the response.

Public: the ``*_routes`` modules ``app.py`` mounts, and the request context, validation, streaming and wire
shapes the dashboard reuses. ``_chat_checks``, ``_disconnect``, ``_openapi`` and ``_params`` serve only ``api/``.
"""

__all__ = [
    "admin_routes",
    "anthropic_routes",
    "batch_routes",
    "batch_wire",
    "context",
    "generate_route",
    "health_routes",
    "inference",
    "jobs_routes",
    "nul_bytes",
    "ollama_routes",
    "openai_routes",
    "principal",
    "rag_routes",
    "responses",
    "responses_routes",
    "schemas",
    "streaming",
    "tenancy_routes",
    "usage_report",
    "validation",
]
