"""One adapter per upstream protocol; translation between protocols lives here and nowhere else.

Public: ``base`` (the adapter contract), each ``*_adapter``, the ``upstream_client`` and ``translate``.
"""

__all__ = [
    "base",
    "embedded_adapter",
    "llama_cpp_tokens",
    "ollama_adapter",
    "openai_adapter",
    "rejection",
    "sse",
    "tei_adapter",
    "translate",
    "upstream_client",
]
