"""Refuse a completion budget the model cannot hold: ``max_tokens`` above its context window.

An engine such as llama-cpp-python quietly caps ``max_tokens`` at what is left of its context, so a
client asking for 1,000,000 tokens got a short answer and no word why. When every backend of the
model declares its context (the embedded model does: ``INFERHUB_LOCAL_CHAT_CONTEXT``), a larger
``max_tokens`` or ``max_completion_tokens`` (``options.num_predict`` on the Ollama API, translated to
``max_tokens`` before it gets here) is a 400 naming the limit. Backends that declare nothing are
left to the engine.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from inferhub.backends.base import Backend
from inferhub.errors import APIError

_FIELDS = ("max_completion_tokens", "max_tokens")


def check_max_tokens(backends: Iterable[Backend], model: str, body: dict[str, Any]) -> None:
    contexts = [backend.context_tokens for backend in backends]
    if not contexts or None in contexts:
        return
    limit = max(c for c in contexts if c is not None)
    for name in _FIELDS:
        asked = body.get(name)
        if isinstance(asked, int) and not isinstance(asked, bool) and asked > limit:
            raise APIError(
                f"{name} {asked} is above the {limit}-token context of model '{model}' (which the prompt "
                f"shares): ask for at most {limit}",
                status_code=400, code="max_tokens_too_large", param=name,
            )  # fmt: skip
