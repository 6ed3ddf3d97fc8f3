"""A finished stream gives its upstream connection back to the pool, for both streaming protocols.

The adapter used to close a stream's response at ``[DONE]`` (or Ollama's ``done``) before the body's end
was read, so the HTTP client dropped the connection: every stream paid a new TCP handshake upstream. The
fake engines run on real sockets here, and an ASGI wrapper records the client port of each request: one
port for all the streams means one connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from fakes import BackgroundServer, create_fake_ollama_app, create_fake_vllm_app
from inferhub.backends.base import Backend
from inferhub.backends.ollama_adapter import OllamaAdapter
from inferhub.backends.openai_adapter import OpenAIAdapter
from inferhub.backends.upstream_client import UpstreamClient


class ClientPorts:
    """ASGI middleware: the client port of every HTTP request the wrapped app receives."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.ports: list[int] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("client"):
            self.ports.append(scope["client"][1])
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def engines() -> Iterator[dict[str, tuple[BackgroundServer, ClientPorts]]]:
    vllm, ollama = ClientPorts(create_fake_vllm_app("m", reasoning=False)), ClientPorts(create_fake_ollama_app(["m"]))
    servers = {"openai": BackgroundServer(vllm).start(), "ollama": BackgroundServer(ollama).start()}
    yield {"openai": (servers["openai"], vllm), "ollama": (servers["ollama"], ollama)}
    for server in servers.values():
        server.stop()


async def _stream_five_times(protocol: str, url: str) -> list[str]:
    backend = Backend(id="b1", model_name="m", backend_type=protocol, endpoint_url=url)
    client = UpstreamClient(url, 10)
    try:
        adapter = (OpenAIAdapter if protocol == "openai" else OllamaAdapter)(backend, client)
        texts = []
        for n in range(5):
            body = {"model": "m", "messages": [{"role": "user", "content": f"hello {n}"}], "stream": True}
            text = ""
            async for event in await adapter.open_chat_stream(body):
                for choice in event.data.get("choices") or []:
                    text += (choice.get("delta") or {}).get("content") or ""
            texts.append(text)
        return texts
    finally:
        await client.aclose()


@pytest.mark.parametrize("protocol", ["openai", "ollama"])
def test_five_streams_use_one_upstream_connection(engines, protocol: str) -> None:
    server, recorder = engines[protocol]
    recorder.ports.clear()
    texts = asyncio.run(_stream_five_times(protocol, server.url))
    assert all(texts) and len(set(texts)) == 5  # five real, complete streams
    assert len(recorder.ports) == 5
    assert len(set(recorder.ports)) == 1, f"streams opened {len(set(recorder.ports))} connections"
