"""Native Ollama (``/api/chat``, ``/api/generate``, ``/api/embed``, ``/api/tags``), spoken as OpenAI."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from inferhub.backends import translate
from inferhub.backends.base import Adapter, Capability, StreamEvent
from inferhub.backends.sse import drain_rest, iter_lines
from inferhub.backends.upstream_client import UpstreamStream
from inferhub.errors import UpstreamError


class OllamaAdapter(Adapter):
    protocol_capabilities = frozenset({"chat", "completions", "embeddings"})

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        request = translate.openai_chat_to_ollama(body, self.backend.target_model, stream=False)
        data = self._expect_object(await self._post_json("/api/chat", request))
        return translate.ollama_chat_to_openai_response(data, self.backend.model_name)

    async def open_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        request = translate.openai_chat_to_ollama(body, self.backend.target_model, stream=True)
        response = await self._open_stream("/api/chat", request)
        return await self._first_event(self._events(response, generate=False))

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        request = translate.openai_completion_to_ollama(body, self.backend.target_model, stream=False)
        data = self._expect_object(await self._post_json("/api/generate", request))
        return translate.ollama_generate_to_openai_completion(data, self.backend.model_name)

    async def open_completion_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        request = translate.openai_completion_to_ollama(body, self.backend.target_model, stream=True)
        response = await self._open_stream("/api/generate", request)
        return await self._first_event(self._events(response, generate=True))

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = translate.embedding_inputs(body["input"])
        data = self._expect_object(
            await self._post_json("/api/embed", {"model": self.backend.target_model, "input": inputs})
        )
        vectors = data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(inputs):
            raise self._invalid("embeddings")
        return translate.openai_embeddings_response(
            vectors, self.backend.model_name, data.get("prompt_eval_count", 0) or 0
        )

    async def learn_capabilities(self) -> frozenset[Capability] | None:
        """Ollama's ``/api/show`` lists what a model does: without ``completion`` (an embedding model such as
        ``nomic-embed-text``) it serves only embeddings. A generation model keeps the default (Ollama embeds
        with any model)."""
        data = await self._post_json("/api/show", {"model": self.backend.target_model})
        capabilities = data.get("capabilities") if isinstance(data, dict) else None
        if isinstance(capabilities, list) and "completion" not in capabilities and "embedding" in capabilities:
            return frozenset({"embeddings"})
        return None

    async def check_health(self) -> bool:
        try:
            await self._get_json("/api/tags", timeout=3.0)
        except UpstreamError:
            return False
        return True

    async def list_models(self) -> list[str]:
        data = await self._get_json("/api/tags", timeout=5.0)
        return [m["name"] for m in data.get("models", []) if isinstance(m, dict) and "name" in m]

    def _expect_object(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self._invalid("a response object")
        return data

    def _invalid(self, what: str) -> UpstreamError:
        return UpstreamError(
            f"{self.backend.label} answered without {what}",
            backend=self.backend.id,
            code="backend_invalid_response",
        )

    async def _events(self, response: UpstreamStream, *, generate: bool) -> AsyncIterator[StreamEvent]:
        chunk_id = translate.completion_id("cmpl" if generate else "chatcmpl")
        created = int(time.time())
        model = self.backend.model_name
        to_chunk = (
            translate.ollama_generate_line_to_openai_chunk if generate else translate.ollama_chat_line_to_openai_chunk
        )
        chunks = response.aiter_bytes()
        try:
            async for line in iter_lines(chunks):
                if not line.strip():
                    continue
                try:
                    data = orjson.loads(line)
                except orjson.JSONDecodeError:
                    raise self._invalid("valid NDJSON") from None
                if "error" in data:
                    raise UpstreamError(
                        f"{self.backend.label} reported an error while streaming: {data['error']}",
                        backend=self.backend.id,
                    )
                yield StreamEvent(data=to_chunk(data, chunk_id=chunk_id, created=created, model=model))
                if data.get("done"):
                    await drain_rest(chunks)
                    obj = "text_completion" if generate else "chat.completion.chunk"
                    yield StreamEvent(
                        data=translate.usage_chunk(
                            chunk_id, created, model, obj,
                            data.get("prompt_eval_count", 0) or 0, data.get("eval_count", 0) or 0,
                        )
                    )  # fmt: skip
                    return
        finally:
            await response.aclose()
        raise UpstreamError(f"{self.backend.label} ended the stream before it was done", backend=self.backend.id)
