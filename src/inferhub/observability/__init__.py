"""Logs, Prometheus metrics and traces; the gateway reports its state here, never the other way round.

Public: ``logging``, ``metrics``, ``http_metrics``, ``tracing``. ``_shared_gauges`` serves ``metrics`` only.
"""

__all__ = ["http_metrics", "logging", "metrics", "tracing"]
