"""Retrieval-augmented generation: documents in, cited answers out, on the gateway's own pipeline."""
