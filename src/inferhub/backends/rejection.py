"""Whether an engine's error answer was caused by the request or by the engine.

A request the engine refuses (bad input, an operation it does not serve) says nothing about the engine's
health: it is passed back to the client as ``backend_rejected`` and is neither counted against the
backend's circuit nor retried elsewhere. Everything else that is not a success is a fault of the backend.

Engines do not all say "bad request" with a 400:

- llama.cpp's ``llama-server`` answers invalid requests with 400 (``invalid_request_error``) and an
  operation it was not started for with 501 (``not_supported_error``, e.g. "This server does not support
  embeddings. Start it with `--embeddings`"); older builds answer a body its JSON parser cannot use with 500
  and a ``[json.exception...]`` or "Failed to parse messages" message.
- llama-cpp-python's server answers every exception with 500 (``internal_server_error``), request faults
  included: "Llama model must be created with embedding=True to call this method", "6 validation errors:
  ..." (its request model refused a field: a ``tool`` message without ``tool_call_id``, ``top_k: -3``, a
  ``json_schema`` response format), "can only concatenate str (not "list") to str" (content parts sent to a
  text-only chat format), a chat template that refuses the messages (jinja ``raise_exception``).
- vLLM, TEI and Ollama answer bad requests with 400 or 422.
"""

from __future__ import annotations

import re

import orjson

# 4xx statuses that mean "this request": not 401/403 (our credentials for the engine), 404 (wrong URL or
# model name in the registration), 408/429 (the engine is slow or overloaded).
_REQUEST_STATUSES = frozenset({400, 413, 415, 422})
_NOT_SERVED = 501  # the engine does not serve this operation

# What a 500's message says when the request was at fault (matched case-insensitively).
_REQUEST_FAULTS = re.compile(
    "|".join(
        (
            r"embedding=true",  # llama-cpp-python: embeddings asked of a generation model
            r"\d+ validation errors?:",  # llama-cpp-python: its request model refused a field (a 500 there)
            r"can only concatenate str \(not \"list\"\)",  # llama-cpp-python: content parts, text-only model
            r"does not support (embeddings|completions|chat|tools|thinking|vision|images)",
            r"\[json\.exception\.",  # llama.cpp: the body's fields have the wrong types
            r"failed to parse (messages|tools|tool_choice|grammar|json)",
            r"missing '[a-z_]+'",  # llama.cpp: "Missing 'content' ...", "Missing 'type' in 'content' part"
            r"(invalid|unsupported|unknown) '?(content|role|type|message|tool)",
            r"conversation roles must alternate",  # chat templates' raise_exception
            r"roles? (is |are )?not supported",
            r"only (user|system|assistant) (and \w+ )?roles? (is |are )?supported",
            r"is undefined",  # jinja: the template read a message field the request lacks
            r"exceeds? (the )?(available )?context",
            r"invalid_request_error",
        )
    ),
    re.IGNORECASE,
)


def caused_by_request(status: int, content: bytes) -> bool:
    """True if an engine's error answer (status ≥ 400, body ``content``) is about the request itself."""
    if status in _REQUEST_STATUSES or status == _NOT_SERVED:
        return True
    if status != 500:
        return False
    return bool(_REQUEST_FAULTS.search(_error_text(content)))


def _error_text(content: bytes) -> str:
    """The error's type and message, however the engine nests them."""
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return content[:2000].decode("utf-8", "replace")
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return f"{error.get('type', '')} {error.get('message', '')}"
    return str(error)[:2000]
