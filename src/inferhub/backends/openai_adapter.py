"""OpenAI-compatible engines: vLLM, llama.cpp server, mlx_lm.server, LiteLLM, TEI's /v1/embeddings.

Requests and chunks pass through as the engine sent them; only the model name is
replaced by the upstream's own. ``reasoning_content`` therefore passes untouched. For llama.cpp
backends two request fields llama-cpp-python refuses are rewritten (``json_schema`` response format,
the ``developer`` role).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from inferhub.backends.base import Adapter, StreamEvent, prompt_text
from inferhub.backends.rejection import caused_by_request
from inferhub.backends.sse import DONE, drain_rest, iter_sse_data
from inferhub.backends.upstream_client import TransportError, UpstreamStream
from inferhub.errors import BackendRejected, UpstreamError


def _schema_as_json_object(body: dict[str, Any]) -> None:
    """``response_format: {type: json_schema, json_schema: {schema}}`` as ``{type: json_object, schema}``: the
    form both llama.cpp servers constrain by grammar (llama-cpp-python refuses ``json_schema`` outright)."""
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") if isinstance(fmt.get("json_schema"), dict) else None
        body["response_format"] = {"type": "json_object", **({"schema": schema} if schema is not None else {})}


def _developer_as_system(body: dict[str, Any]) -> None:
    """``role: "developer"`` messages as ``"system"`` (what OpenAI defines them as): llama-cpp-python's server
    refuses the role with a validation error, and Codex CLI sends its instructions in one."""
    messages = body.get("messages")
    if isinstance(messages, list) and any(isinstance(m, dict) and m.get("role") == "developer" for m in messages):
        body["messages"] = [
            {**m, "role": "system"} if isinstance(m, dict) and m.get("role") == "developer" else m for m in messages
        ]


class OpenAIAdapter(Adapter):
    protocol_capabilities = frozenset({"chat", "completions", "embeddings"})

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._expect_object(await self._post_json("/v1/chat/completions", self._upstream(body)))

    async def open_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        return await self._stream("/v1/chat/completions", body)

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._expect_object(await self._post_json("/v1/completions", self._upstream(body)))

    async def open_completion_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        return await self._stream("/v1/completions", body)

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._expect_object(await self._post_json("/v1/embeddings", self._upstream(body)))

    async def check_health(self) -> bool:
        if self.backend.backend_type == "llamacpp":
            # llama.cpp's server answers /health (503 while loading); llama-cpp-python's has no such route
            # (404) and serialises /v1/models behind generation, so any answer under 500 means "up".
            try:
                response = await self.client.get("/health", timeout=3.0, headers=dict(self.backend.auth_headers))
            except TransportError:
                return False
            return response.status_code < 500
        try:
            await self._get_json("/v1/models", timeout=3.0)
        except UpstreamError:
            return False
        return True

    async def count_prompt_tokens(self, body: dict[str, Any]) -> int:
        """llama-cpp-python's server streams without usage: count with the model's own chat template here when
        the model file is at hand (the embedded model), else ask its tokenizer endpoint (the text only)."""
        if self.backend.backend_type == "llamacpp" and self.prompt_counter is None:
            try:
                data = await self._post_json("/extras/tokenize/count", {"input": prompt_text(body)})
                return int(data["count"])
            except (UpstreamError, KeyError, TypeError, ValueError):
                pass
        return await super().count_prompt_tokens(body)

    async def list_models(self) -> list[str]:
        data = await self._get_json("/v1/models", timeout=5.0)
        return [m["id"] for m in data.get("data", []) if isinstance(m, dict) and "id" in m]

    def _upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        upstream = {**body, "model": self.backend.target_model}
        upstream.pop("stream", None)
        upstream.pop("stream_options", None)
        if self.backend.backend_type == "llamacpp":
            _schema_as_json_object(upstream)
            _developer_as_system(upstream)
        return upstream

    def _expect_object(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or ("choices" not in data and "data" not in data):
            raise UpstreamError(
                f"{self.backend.label} answered with JSON that is not an OpenAI response",
                backend=self.backend.id,
                code="backend_invalid_response",
            )
        return data

    async def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        await self._check_context(body)
        payload = self._upstream(body)
        payload["stream"] = True
        # Always ask for usage so it can be counted; the gateway hides it if the client did not ask.
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        response = await self._open_stream(path, payload)
        return await self._first_event(self._events(response))

    async def _events(self, response: UpstreamStream) -> AsyncIterator[StreamEvent]:
        events = 0
        finished = False
        chunks = response.aiter_bytes()
        try:
            async for payload in iter_sse_data(chunks):
                if payload is DONE:
                    finished = True
                    await drain_rest(chunks)
                    break
                events += 1
                try:
                    data = orjson.loads(payload)
                except orjson.JSONDecodeError:
                    raise UpstreamError(
                        f"{self.backend.label} sent a stream event that is not JSON",
                        backend=self.backend.id,
                        code="backend_invalid_response",
                    ) from None
                if isinstance(data, dict) and "error" in data:
                    if events == 1 and caused_by_request(500, payload):  # refused before it began to answer
                        raise BackendRejected(
                            f"{self.backend.label} rejected the request: {data['error']}"[:1000],
                            backend=self.backend.id,
                        )
                    raise UpstreamError(
                        f"{self.backend.label} reported an error while streaming: {data['error']}",
                        backend=self.backend.id,
                    )
                if not finished and _has_finish_reason(data):
                    finished = True
                yield StreamEvent(data=data, raw=payload)
        finally:
            # A stream that did not finish leaves its connection in doubt (llama-cpp-python closes it after
            # a request that failed mid-response): close it rather than give it to the next request.
            await (response.aclose() if finished else response.abort())
        if events and not finished:
            raise UpstreamError(
                f"{self.backend.label} ended the stream before it was done (no finish_reason, no [DONE])",
                backend=self.backend.id,
                code="backend_stream_truncated",
            )
        if events == 0:
            raise UpstreamError(
                f"{self.backend.label} ended the stream without sending any event",
                backend=self.backend.id,
                code="backend_stream_empty",
            )


def _has_finish_reason(data: dict[str, Any]) -> bool:
    choices = data.get("choices")
    return bool(choices) and isinstance(choices[0], dict) and bool(choices[0].get("finish_reason"))
