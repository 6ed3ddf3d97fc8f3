"""Which engine answers are the request's fault (``backend_rejected``) and which the engine's.

The bodies are what the engines send: llama-cpp-python's server (every exception is a 500), llama.cpp's
``llama-server`` (400 ``invalid_request_error``, 501 ``not_supported_error``, older builds a 500 from its
JSON parser), vLLM/TEI (400/422), and the faults that must keep counting against a backend.
"""

from __future__ import annotations

import orjson
import pytest

from inferhub.backends.rejection import caused_by_request


def _openai_error(message: str, kind: str = "internal_server_error") -> bytes:
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}})


REQUEST_FAULTS = [
    (500, _openai_error("Llama model must be created with embedding=True to call this method")),
    (500, _openai_error("6 validation errors:\n  {'type': 'literal_error', 'loc': ('body', 'messages', 0)}")),
    (500, _openai_error("1 validation error:\n  {'type': 'greater_than_equal', 'loc': ('body', 'top_k')}")),
    (500, _openai_error('can only concatenate str (not "list") to str')),
    (500, _openai_error("Conversation roles must alternate user/assistant/user/assistant/...")),
    (500, _openai_error("[json.exception.type_error.302] type must be string, but is array", "server_error")),
    (500, _openai_error("Failed to parse messages: Missing 'content'; messages = [...]", "server_error")),
    (500, _openai_error("anything at all", "invalid_request_error")),
    (
        400,
        _openai_error(
            "request (4476 tokens) exceeds the available context size (4096 tokens)", "exceed_context_size_error"
        ),
    ),
    (400, b'{"object":"error","message":"max_tokens must be at least 1","type":"BadRequestError","code":400}'),
    (422, b'{"detail":[{"loc":["body","messages"],"msg":"field required"}]}'),
    (413, b'{"error":"Input validation error: inputs must have less than 512 tokens"}'),
    (
        501,
        _openai_error("This server does not support embeddings. Start it with `--embeddings`", "not_supported_error"),
    ),
]

BACKEND_FAULTS = [
    (500, _openai_error("llama_decode returned -3")),
    (500, _openai_error("CUDA error: out of memory")),
    (500, b"Internal Server Error"),
    (500, b""),
    (502, b"<html>Bad Gateway</html>"),
    (503, _openai_error("Loading model", "unavailable_error")),
    (504, b""),
    (404, b'{"error":"model \\"llama3\\" not found, try pulling it first"}'),
    (401, _openai_error("Invalid API Key", "authentication_error")),
    (403, b"forbidden"),
    (429, b'{"error":"too many requests"}'),
]


@pytest.mark.parametrize(("status", "body"), REQUEST_FAULTS)
def test_answers_caused_by_the_request(status: int, body: bytes) -> None:
    assert caused_by_request(status, body)


@pytest.mark.parametrize(("status", "body"), BACKEND_FAULTS)
def test_faults_of_the_backend(status: int, body: bytes) -> None:
    assert not caused_by_request(status, body)
