"""Durable async jobs, run through the gateway's service like any other caller.

Public: ``worker`` (claims and runs jobs) and ``webhooks`` (delivers their results).
"""

__all__ = ["webhooks", "worker"]
