"""The request pipeline: authenticate → allow-list → limits → fair queue → route → forward → account.

Public: ``service`` (the one entry every caller uses), ``pipeline``, ``registry``, ``auth``, ``limits``,
``metering`` and the routing parts tests drive directly. ``_admission`` is internal to the pipeline.
"""

__all__ = [
    "auth",
    "backend_state",
    "balancer",
    "circuit_breaker",
    "context_limit",
    "fair_queue",
    "health_monitor",
    "limits",
    "metering",
    "pipeline",
    "registry",
    "retry_budget",
    "service",
    "stats",
    "usage_writer",
]
