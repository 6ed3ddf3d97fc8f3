"""OpenTelemetry: a span per request with admission, routing and upstream children; traceparent travels on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from fakes import BackgroundServer, create_fake_vllm_app
from inferhub.api.context import AppContext
from inferhub.app import create_app
from inferhub.fleet.records import BackendRecord
from inferhub.gateway.auth import KeyCache
from inferhub.gateway.pipeline import Gateway
from inferhub.gateway.registry import BackendRegistry
from inferhub.gateway.stats import StatsRecorder
from inferhub.observability.tracing import Tracing
from inferhub.tenancy.keys import KeyRecord, hash_key

KEY = "ih-tracing-test-key"


@pytest.fixture(scope="module")
def engine():
    server = BackgroundServer(create_fake_vllm_app(model="traced")).start()
    yield server
    server.stop()


def _app(engine_url: str, exporter: InMemorySpanExporter):
    registry = BackendRegistry()
    registry.replace_stored([BackendRecord(
        id=1, model_name="traced", backend_type="vllm", endpoint_url=engine_url, upstream_model=None, enabled=True,
        max_tokens=None, temperature_default=None, timeout_seconds=10.0, description="", source="api", weight=1,
        priority=0, max_concurrency=None, draining=False, discover_models=False, credentials_encrypted=None,
        avg_tokens_per_sec=0.0,
        avg_latency_ms=0.0, total_requests=0, total_errors=0,
    )])  # fmt: skip
    keys = KeyCache()
    keys.replace([KeyRecord(id=1, name="t", prefix=KEY[:10], key_hash=hash_key(KEY), scopes=("inference",),
                            created_at=datetime.now(UTC), expires_at=None, revoked_at=None)])  # fmt: skip
    tracing = Tracing(exporter, batch=False)
    gateway = Gateway(registry, StatsRecorder(None), tracing=tracing)
    return create_app(AppContext(gateway=gateway, registry=registry, keys=keys), tracing=tracing), registry


async def _chat(app, registry: BackendRegistry, headers: dict[str, str]) -> httpx.Response:
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://inferhub") as client:
            return await client.post(
                "/v1/chat/completions",
                headers={"Authorization": f"Bearer {KEY}", **headers},
                json={"model": "traced", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
            )
    finally:
        await registry.close()


def test_request_span_has_admission_routing_and_upstream_children(engine: BackgroundServer) -> None:
    exporter = InMemorySpanExporter()
    app, registry = _app(engine.url, exporter)
    reply = asyncio.run(_chat(app, registry, {}))
    assert reply.status_code == 200
    spans = {span.name: span for span in exporter.get_finished_spans()}
    root = spans["POST /v1/chat/completions"]
    assert root.kind is trace.SpanKind.SERVER
    for name in ("inferhub.routing", "inferhub.admission", "inferhub.upstream"):
        assert spans[name].parent is not None and spans[name].parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id
    upstream = spans["inferhub.upstream"]
    assert upstream.kind is trace.SpanKind.CLIENT
    assert upstream.attributes["backend"] == "1"
    assert root.attributes["http.response.status_code"] == 200

    # The engine received traceparent naming the upstream span.
    sent = engine.app.state.calls[-1].headers
    traceparent = next(v for k, v in sent.items() if k.lower() == "traceparent")
    _, trace_id, span_id, _ = traceparent.split("-")
    assert int(trace_id, 16) == root.context.trace_id
    assert int(span_id, 16) == upstream.context.span_id


def test_incoming_traceparent_continues_the_callers_trace(engine: BackgroundServer) -> None:
    exporter = InMemorySpanExporter()
    app, registry = _app(engine.url, exporter)
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    reply = asyncio.run(_chat(app, registry, {"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}))
    assert reply.status_code == 200
    root = next(s for s in exporter.get_finished_spans() if s.name == "POST /v1/chat/completions")
    assert root.context.trace_id == int(caller_trace, 16)
    assert root.parent is not None and root.parent.span_id == int("00f067aa0ba902b7", 16)
