"""Optional OpenTelemetry tracing: a span per request, children for admission, routing and the upstream call.

Off by default. ``INFERHUB_OTLP_ENDPOINT`` (e.g. ``http://otel-collector:4318/v1/traces``)
turns it on with the OTLP/HTTP exporter. An incoming ``traceparent`` becomes the
parent of the request span, and the upstream call forwards ``traceparent`` to
the engine, so an engine that traces (vLLM does) joins the same trace.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Headers the adapters add to the upstream request (``traceparent``), set per request by the pipeline.
upstream_headers: ContextVar[dict[str, str] | None] = ContextVar("upstream_headers", default=None)


class Tracing:
    def __init__(self, exporter: SpanExporter, *, service_name: str = "inferhub", batch: bool = True) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self.tracer = self.provider.get_tracer("inferhub")

    @classmethod
    def otlp(cls, endpoint: str, service_name: str = "inferhub") -> Tracing:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return cls(OTLPSpanExporter(endpoint=endpoint), service_name=service_name)

    @contextmanager
    def span(self, name: str, kind: trace.SpanKind = trace.SpanKind.INTERNAL, **attributes: Any) -> Iterator[Any]:
        with self.tracer.start_as_current_span(name, kind=kind, attributes=_clean(attributes)) as span:
            yield span

    @contextmanager
    def upstream_span(self, name: str, **attributes: Any) -> Iterator[Any]:
        """A client span whose context travels to the engine as ``traceparent``."""
        with self.tracer.start_as_current_span(name, kind=trace.SpanKind.CLIENT, attributes=_clean(attributes)) as s:
            carrier: dict[str, str] = {}
            inject(carrier)
            token = upstream_headers.set(carrier)
            try:
                yield s
            finally:
                upstream_headers.reset(token)

    def shutdown(self) -> None:
        self.provider.shutdown()


def maybe_span(tracing: Tracing | None, name: str, **attributes: Any):
    return tracing.span(name, **attributes) if tracing is not None else nullcontext()


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


class TracingMiddleware:
    """Opens the request span, continuing the caller's trace when it sent ``traceparent``."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(("/health", "/metrics")):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = extract(headers)
        token = otel_context.attach(parent)
        status = 500

        async def send_and_watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            with self.tracing.tracer.start_as_current_span(
                f"{scope['method']} {scope['path']}", kind=trace.SpanKind.SERVER,
                attributes={"http.request.method": scope["method"], "url.path": scope["path"],
                            "inferhub.request_id": headers.get("x-request-id", "")},
            ) as span:  # fmt: skip
                await self.app(scope, receive, send_and_watch)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(trace.Status(trace.StatusCode.ERROR))
        finally:
            otel_context.detach(token)
