"""Work a key submits now and collects later: job types, batch endpoints, file and batch records.

Plain data. ``store/`` keeps it, ``jobs/`` runs it, ``api/`` shapes it into the OpenAI Batch objects
(``api/batch_wire.py``). Nothing here stores, serves or imports SQLAlchemy (``tests/test_layering.py``).
"""

from inferhub.deferred.records import (
    ENDPOINT_TYPES,
    JOB_TYPES,
    BatchRecord,
    FileRecord,
    error_line,
    invalid_line,
    output_line,
)

__all__ = ["ENDPOINT_TYPES", "JOB_TYPES", "BatchRecord", "FileRecord", "error_line", "invalid_line", "output_line"]
