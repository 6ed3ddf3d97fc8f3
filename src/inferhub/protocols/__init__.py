"""Translations between client protocols and the OpenAI chat shape the pipeline speaks.

Public: ``anthropic_messages`` (the Messages API) and ``responses`` (the Responses API).
"""

__all__ = ["anthropic_messages", "responses"]
