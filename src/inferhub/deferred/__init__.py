"""Work a key submits now and collects later: job types, batch endpoints, file and batch records.

Plain data in ``records``. ``store/`` keeps it, ``jobs/`` runs it, ``api/`` shapes it into the OpenAI Batch
objects (``api/batch_wire.py``). Nothing here stores, serves or imports SQLAlchemy (``tests/test_layering.py``).
"""

__all__ = ["records", "responses"]
