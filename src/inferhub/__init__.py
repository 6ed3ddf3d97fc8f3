"""Inferhub: a self-hosted LLM backend."""
__version__ = "0.1.0"
