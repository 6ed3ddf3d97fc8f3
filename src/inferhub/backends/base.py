"""What every adapter offers, in the OpenAI shape, and how upstream faults become HTTP errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import structlog

from inferhub.backends.rejection import caused_by_request
from inferhub.backends.upstream_client import ConnectFailed, TimedOut, TransportError, UpstreamClient, UpstreamStream
from inferhub.errors import APIError, BackendRejected, UpstreamError
from inferhub.observability.tracing import upstream_headers

log = structlog.get_logger("inferhub.backends")

Protocol = Literal["openai", "ollama", "tei", "embedded"]
Capability = Literal["chat", "completions", "embeddings"]

PROTOCOL_OF_TYPE: dict[str, Protocol] = {
    "openai": "openai",
    "llamacpp": "openai",
    "vllm": "openai",
    "mlx": "openai",
    "ollama": "ollama",
    "tei": "tei",
    "embedded": "embedded",
}

ALL_CAPABILITIES: frozenset[Capability] = frozenset({"chat", "completions", "embeddings"})

# What a backend serves when its registration does not say. A llama.cpp server is started for one job:
# generation, or embeddings with ``--embeddings`` (llama-cpp-python: ``embedding=True``); generation is the
# default, so an embedding llama.cpp is registered with ``capabilities: [embeddings]``.
DEFAULT_CAPABILITIES: dict[str, frozenset[Capability]] = {
    "openai": ALL_CAPABILITIES,
    "vllm": ALL_CAPABILITIES,
    "mlx": ALL_CAPABILITIES,
    "ollama": ALL_CAPABILITIES,
    "llamacpp": frozenset({"chat", "completions"}),
    "tei": frozenset({"embeddings"}),
    "embedded": frozenset({"embeddings"}),
}


@dataclass(frozen=True, slots=True)
class Backend:
    """A routable backend: a row of ``llm_backends`` or one of the local models."""

    id: str
    model_name: str
    backend_type: str
    endpoint_url: str
    upstream_model: str | None = None
    enabled: bool = True
    max_tokens: int | None = None
    temperature_default: float | None = None
    timeout_seconds: float = 120.0
    description: str = ""
    source: str = "api"
    weight: int = 1
    priority: int = 0
    max_concurrency: int | None = None
    draining: bool = False
    discover_models: bool = True
    # The operations it serves, as registered; None: the default of its type (DEFAULT_CAPABILITIES).
    capabilities: frozenset[Capability] | None = None
    context_tokens: int | None = None  # the engine's context window, when declared (max_tokens above it: 400)
    # Decrypted upstream credentials as request headers; kept out of repr so they never reach a log.
    auth_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def protocol(self) -> Protocol:
        return PROTOCOL_OF_TYPE[self.backend_type]

    @property
    def target_model(self) -> str:
        return self.upstream_model or self.model_name

    @property
    def serves(self) -> frozenset[Capability]:
        """The operations this backend serves: as registered, else the default of its type."""
        if self.capabilities is not None:
            return self.capabilities
        return DEFAULT_CAPABILITIES.get(self.backend_type, ALL_CAPABILITIES)

    @property
    def label(self) -> str:
        """How errors and logs name this backend."""
        return f"{self.backend_type} backend {self.endpoint_url} (model {self.model_name})"


@dataclass(slots=True)
class StreamEvent:
    """One streamed chunk in the OpenAI shape; ``raw`` is the upstream's own bytes when it spoke OpenAI."""

    data: dict[str, Any]
    raw: bytes | None = None


class Adapter:
    """Base adapter. Subclasses implement what their protocol supports (``protocol_capabilities``);
    ``capabilities`` is what this backend serves: those operations its registration declares."""

    protocol_capabilities: frozenset[Capability] = frozenset()
    # Counts a body's prompt tokens here, exactly as the engine does (its tokenizer and chat template).
    prompt_counter: Callable[[dict[str, Any]], int] | None = None

    def __init__(self, backend: Backend, client: UpstreamClient) -> None:
        self.backend = backend
        self.client = client
        self.capabilities: frozenset[Capability] = backend.serves & self.protocol_capabilities

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self.unsupported("chat completions")

    async def open_chat_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        raise self.unsupported("chat completions")

    async def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self.unsupported("completions")

    async def open_completion_stream(self, body: dict[str, Any]) -> AsyncIterator[StreamEvent]:
        raise self.unsupported("completions")

    async def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        raise self.unsupported("embeddings")

    async def check_health(self) -> bool:
        return True

    async def list_models(self) -> list[str]:
        return [self.backend.target_model]

    async def learn_capabilities(self) -> frozenset[Capability] | None:
        """What the engine says this model serves, when it says more than the type's default (else None)."""
        return None

    async def count_prompt_tokens(self, body: dict[str, Any]) -> int:
        """Used only when an engine streams without reporting usage: the exact local count, else characters/4."""
        if self.prompt_counter is not None:
            return await asyncio.to_thread(self.estimate_prompt_tokens, body)
        return max(1, len(prompt_text(body)) // 4)

    def start_prompt_count(self, body: dict[str, Any]) -> asyncio.Future[int] | None:
        """Count a stream's prompt in a thread while the engine works, when it can be counted here exactly,
        so a stream dropped before the engine reports usage still has its real prompt tokens."""
        if self.prompt_counter is None:
            return None
        return asyncio.ensure_future(asyncio.to_thread(self.estimate_prompt_tokens, body))

    def estimate_prompt_tokens(self, body: dict[str, Any]) -> int:
        """The prompt tokens known without the engine, synchronously: exact with a local counter, else chars/4."""
        if self.prompt_counter is not None:
            try:
                return self.prompt_counter(body)
            except Exception as exc:  # a template the engine would refuse too: bill the estimate
                log.warning("prompt_count_failed", backend=self.backend.id, error=str(exc)[:200])
        return max(1, len(prompt_text(body)) // 4)

    def unsupported(self, what: str) -> APIError:
        """The 400 for an operation this backend does not serve (the gateway raises it too, before routing)."""
        serves = ", ".join(sorted(self.capabilities)) or "nothing"
        return APIError(
            f"model '{self.backend.model_name}' does not support {what} (it serves: {serves})",
            status_code=400,
            code="unsupported_operation",
            param="model",
        )

    # -- HTTP helpers shared by the HTTP adapters --------------------------------------------

    async def _post_json(self, path: str, payload: dict[str, Any]) -> Any:
        try:
            response = await self.client.request("POST", path, content=orjson.dumps(payload), headers=self._headers())
        except TransportError as exc:
            raise self._transport_error(exc) from None
        self._raise_for_status(response.status_code, response.content)
        return self._decode(response.content)

    def _headers(self) -> dict[str, str]:
        extra = upstream_headers.get()
        if not extra and not self.backend.auth_headers:
            return _JSON
        return {**_JSON, **dict(self.backend.auth_headers), **(extra or {})}

    async def _get_json(self, path: str, timeout: float | None = None) -> Any:
        try:
            response = await self.client.get(path, timeout=timeout, headers=dict(self.backend.auth_headers))
        except TransportError as exc:
            raise self._transport_error(exc) from None
        self._raise_for_status(response.status_code, response.content)
        return self._decode(response.content)

    async def _open_stream(self, path: str, payload: dict[str, Any]) -> UpstreamStream:
        """Send the request and wait for the status line, so a failure is known before the first byte."""
        try:
            response = await self.client.stream("POST", path, content=orjson.dumps(payload), headers=self._headers())
        except TransportError as exc:
            raise self._transport_error(exc) from None
        if response.status_code >= 400:
            try:
                content = await response.aread()
            except TransportError:
                content = b""
            finally:
                await response.aclose()
            self._raise_for_status(response.status_code, content)
        return response

    def _decode(self, content: bytes) -> Any:
        try:
            return orjson.loads(content)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"{self.backend.label} answered with a body that is not JSON",
                backend=self.backend.id,
                code="backend_invalid_response",
            ) from None

    def _transport_error(self, exc: TransportError) -> UpstreamError:
        label = self.backend.label
        if isinstance(exc, TimedOut):
            return UpstreamError(
                f"{label} did not answer within {self.backend.timeout_seconds:g}s",
                status_code=504,
                backend=self.backend.id,
                code="backend_timeout",
            )
        if isinstance(exc, ConnectFailed):
            return UpstreamError(f"{label} refused the connection", backend=self.backend.id, code="backend_unreachable")
        return UpstreamError(f"{label} failed: {exc.kind}", backend=self.backend.id, code="backend_error")

    async def _check_context(self, body: dict[str, Any]) -> None:
        """Refuse a stream whose prompt cannot fit the engine's context. llama-cpp-python finds that out only
        after it has answered 200, then drops the stream (and, for a moment, new connections)."""
        window = self.backend.context_tokens
        if window is None:
            return
        overhead = _TEMPLATE_TOKENS + _MESSAGE_TOKENS * len(body.get("messages") or ())
        if len(prompt_text(body).encode()) + overhead < window:  # a token is at least one byte
            return
        tokens = await self.count_prompt_tokens(body) + overhead
        if tokens >= window:
            raise APIError(
                f"the prompt is about {tokens} tokens; model '{self.backend.model_name}' has a context window "
                f"of {window} tokens: shorten the messages",
                status_code=400, code="context_length_exceeded", param="messages",
            )  # fmt: skip

    async def _first_event(self, events: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
        """Wait for a stream's first event before the client's response starts: a stream the engine drops
        before answering is then an error with a status, failed over or passed back like any other."""
        try:
            first = await anext(events)
        except StopAsyncIteration:
            return _prepend(None, events)
        except (TransportError, UpstreamError) as exc:
            dropped = isinstance(exc, TransportError) or exc.code == "backend_stream_empty"
            if dropped and await self.check_health():
                # llama-cpp-python answers 200 to a stream whose prompt is longer than its context and then
                # drops the connection. The engine is up: this request, not the engine, is the problem.
                raise BackendRejected(
                    f"{self.backend.label} ended the stream before answering and is up: "
                    "the request is the likely cause (a prompt longer than the model's context, for example); "
                    "send it without streaming for the engine's own message",
                    backend=self.backend.id,
                ) from None
            raise self.stream_broken(exc) if isinstance(exc, TransportError) else exc from None
        return _prepend(first, events)

    def stream_broken(self, exc: BaseException) -> UpstreamError:
        if isinstance(exc, TransportError):
            error = self._transport_error(exc)
            error.message = error.message + " while streaming"
            return error
        if isinstance(exc, UpstreamError):
            return exc
        return UpstreamError(f"{self.backend.label} sent a stream that could not be read", backend=self.backend.id)

    def _raise_for_status(self, status: int, content: bytes) -> None:
        if status < 400:
            return
        message = _error_message(content)
        label = self.backend.label
        if caused_by_request(status, content):
            raise BackendRejected(
                f"{label} rejected the request ({status}): {message}",
                status_code=413 if status == 413 else 400, backend=self.backend.id,
            )  # fmt: skip
        if status == 404:
            raise UpstreamError(
                f"{label} answered 404: {message}", status_code=502, backend=self.backend.id,
                code="backend_model_missing",
            )  # fmt: skip
        if status == 429 or status == 503:
            raise UpstreamError(
                f"{label} is overloaded ({status}): {message}", status_code=503, backend=self.backend.id,
                code="backend_overloaded",
            )  # fmt: skip
        raise UpstreamError(f"{label} answered {status}: {message}", backend=self.backend.id)


_JSON = {"content-type": "application/json"}
# An upper bound of what a chat template adds (SmolLM2's: a default system message of ~20 tokens and ~5 per
# message), so that a prompt that may not fit is counted exactly.
_TEMPLATE_TOKENS, _MESSAGE_TOKENS = 32, 8


async def _prepend(first: StreamEvent | None, rest: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    try:
        if first is not None:
            yield first
        async for event in rest:
            yield event
    finally:
        close = getattr(rest, "aclose", None)
        if close is not None:
            await close()


def prompt_text(body: dict[str, Any]) -> str:
    """The text of a chat or completion request, for token counting."""
    if "messages" in body:
        parts = []
        for message in body["messages"]:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            parts.append(content or "")
        return "\n".join(parts)
    prompt = body.get("prompt", "")
    return "".join(prompt) if isinstance(prompt, list) else str(prompt)


def _error_message(content: bytes) -> str:
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        text = content.decode("utf-8", "replace").strip()
        return text[:200] or "no details"
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data))
        if isinstance(error, dict):
            return str(error.get("message", error))[:300]
        return str(error)[:300]
    return str(data)[:300]
