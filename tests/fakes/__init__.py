"""Fake upstream engines (Ollama, Hugging Face TEI, vLLM with a reasoning parser or calling tools) for tests.

Each ``create_fake_*_app`` returns a Starlette ASGI app; run it on a real port with
:class:`BackgroundServer`, or drive it in-process with ``httpx.ASGITransport``. Every app records what it
received on ``app.state.requests`` (POST bodies) and ``app.state.calls`` (all requests), and can be made
to misbehave via ``app.state.fail_mode`` (see :mod:`._common`).
"""

from ._common import FAIL_MODES, FailMode, RecordedCall, hash_embedding, tokens
from .ollama import create_fake_ollama_app
from .server import BackgroundServer
from .tei import create_fake_tei_app
from .tool_engine import create_fake_tool_engine_app
from .vllm import create_fake_vllm_app

__all__ = [
    "FAIL_MODES",
    "BackgroundServer",
    "FailMode",
    "RecordedCall",
    "create_fake_ollama_app",
    "create_fake_tei_app",
    "create_fake_tool_engine_app",
    "create_fake_vllm_app",
    "hash_embedding",
    "tokens",
]
