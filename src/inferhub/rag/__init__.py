"""Retrieval-augmented generation: documents in, cited answers out, on the gateway's own pipeline.

Public: ``service`` (ingest, search, answer) and ``extract`` (text out of uploads). ``_chunking`` serves ``service``.
"""

__all__ = ["extract", "service"]
