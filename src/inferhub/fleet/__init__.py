"""The fleet as configured: backend and model-route records, and a backend's pending statistics.

Plain dataclasses in ``records``. ``store/`` maps rows to them, ``gateway/`` routes with them, ``api/`` and
``ui/`` show them. Nothing here stores, serves or imports SQLAlchemy (``tests/test_layering.py``).
"""

__all__ = ["records"]
