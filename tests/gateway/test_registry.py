"""BackendRegistry: grouping, enabled models, adapter reuse (no servers; clients are never used)."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from fakes import BackgroundServer, create_fake_ollama_app
from inferhub.backends.ollama_adapter import OllamaAdapter
from inferhub.backends.openai_adapter import OpenAIAdapter
from inferhub.backends.tei_adapter import TEIAdapter
from inferhub.errors import APIError
from inferhub.fleet.records import BackendRecord
from inferhub.gateway.health_monitor import HealthMonitor
from inferhub.gateway.pipeline import Gateway
from inferhub.gateway.registry import BackendRegistry, canonical_model_name
from inferhub.gateway.stats import StatsRecorder


def _record(record_id, model, backend_type="vllm", endpoint="http://a:8000", **changes):
    record = BackendRecord(
        id=record_id,
        model_name=model,
        backend_type=backend_type,
        endpoint_url=endpoint,
        upstream_model=None,
        enabled=True,
        max_tokens=None,
        temperature_default=None,
        timeout_seconds=60.0,
        description="",
        source="api",
        weight=1,
        priority=0,
        max_concurrency=None,
        draining=False,
        discover_models=True,
        credentials_encrypted=None,
        avg_tokens_per_sec=0.0,
        avg_latency_ms=0.0,
        total_requests=0,
        total_errors=0,
    )
    return dataclasses.replace(record, **changes)


@pytest.fixture
def registry():
    reg = BackendRegistry()
    yield reg
    asyncio.run(reg.close())


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("phi3:mini:latest", "phi3:mini"),
        ("phi3:latest", "phi3"),
        ("phi3:mini", "phi3:mini"),
        ("phi3", "phi3"),
        ("latest", "latest"),
        ("llama3:8b-latest", "llama3:8b-latest"),
    ],
)
def test_canonical_model_name(name, canonical):
    assert canonical_model_name(name) == canonical


def test_empty_registry(registry):
    assert registry.backends == ()
    assert registry.model_names() == []
    assert registry.candidates("x") == ()


def test_groups_by_canonical_model(registry):
    registry.replace_stored(
        [
            _record(1, "llama3", endpoint="http://a:8000"),
            _record(2, "llama3:latest", backend_type="ollama", endpoint="http://b:11434"),
            _record(3, "embed", backend_type="tei", endpoint="http://c:80"),
        ]
    )
    assert [b.id for b in registry.candidates("llama3")] == ["1", "2"]
    assert [b.id for b in registry.candidates("llama3:latest")] == ["1", "2"]
    assert [b.id for b in registry.candidates("embed")] == ["3"]
    assert registry.candidates("other") == ()
    assert registry.model_names() == ["embed", "llama3"]
    assert [b.id for b in registry.backends] == ["1", "2", "3"]


def test_adapter_class_follows_backend_type(registry):
    registry.replace_stored(
        [
            _record(1, "a", backend_type="vllm"),
            _record(2, "b", backend_type="llamacpp"),
            _record(3, "c", backend_type="ollama"),
            _record(4, "d", backend_type="tei"),
        ]
    )
    by_id = {b.id: registry.adapter(b) for b in registry.backends}
    assert type(by_id["1"]) is OpenAIAdapter
    assert type(by_id["2"]) is OpenAIAdapter
    assert type(by_id["3"]) is OllamaAdapter
    assert type(by_id["4"]) is TEIAdapter
    assert all(adapter.backend.id == backend_id for backend_id, adapter in by_id.items())


def test_capabilities_default_by_backend_type(registry):
    registry.replace_stored(
        [
            _record(1, "a", backend_type="vllm"),
            _record(2, "b", backend_type="llamacpp"),
            _record(3, "c", backend_type="ollama"),
            _record(4, "d", backend_type="tei"),
            _record(5, "e", backend_type="openai"),
        ]
    )
    serves = {b.id: registry.adapter(b).capabilities for b in registry.backends}
    everything = {"chat", "completions", "embeddings"}
    assert serves == {"1": everything, "2": {"chat", "completions"}, "3": everything, "4": {"embeddings"},
                      "5": everything}  # fmt: skip


def test_declared_capabilities_replace_the_default_within_what_the_protocol_can_do(registry):
    registry.replace_stored(
        [
            _record(1, "embedder", backend_type="llamacpp", capabilities=["embeddings"]),
            _record(2, "chatty", backend_type="vllm", capabilities=["chat"]),
            _record(3, "tei", backend_type="tei", capabilities=["chat", "embeddings"]),  # TEI cannot chat
        ]
    )
    serves = {b.id: registry.adapter(b).capabilities for b in registry.backends}
    assert serves == {"1": {"embeddings"}, "2": {"chat"}, "3": {"embeddings"}}
    (embedder,) = registry.candidates("embedder")
    assert embedder.capabilities == frozenset({"embeddings"})


def test_capabilities_are_learned_from_ollama_unless_declared():
    """Ollama's /api/show says an embedding model does not generate: chat to it is refused before forwarding."""
    server = BackgroundServer(create_fake_ollama_app(["nomic-embed-text", "llama3.1:8b"])).start()

    async def scenario() -> None:
        registry = BackendRegistry()
        registry.replace_stored([
            _record(1, "nomic-embed-text", backend_type="ollama", endpoint=server.url, discover_models=False),
            _record(2, "llama3.1:8b", backend_type="ollama", endpoint=server.url, discover_models=False),
            _record(3, "declared", backend_type="ollama", endpoint=server.url, upstream_model="nomic-embed-text",
                    discover_models=False, capabilities=["chat", "embeddings"]),
        ])  # fmt: skip
        gateway = Gateway(registry, StatsRecorder(None))
        try:
            await HealthMonitor(registry, gateway.admission).discover()
            serves = {b.id: registry.adapter(b).capabilities for b in registry.backends}
            assert serves == {"1": {"embeddings"}, "2": {"chat", "completions", "embeddings"},
                              "3": {"chat", "embeddings"}}  # fmt: skip
            before = len(server.app.state.requests)
            with pytest.raises(APIError) as raised:
                await gateway.run("chat", {"model": "nomic-embed-text", "messages": [{"role": "user", "content": "x"}]})
            assert raised.value.code == "unsupported_operation" and raised.value.status_code == 400
            assert len(server.app.state.requests) == before  # nothing was forwarded
            _, result = await gateway.run("embeddings", {"model": "nomic-embed-text", "input": ["x"]})
            assert len(result["data"]) == 1
        finally:
            await registry.close()

    try:
        asyncio.run(scenario())
    finally:
        server.stop()


def test_record_fields_copied_to_backend(registry):
    registry.replace_stored(
        [_record(7, "m", endpoint="http://a:8000/", upstream_model="org/m", max_tokens=99, timeout_seconds=5.0)]
    )
    (backend,) = registry.backends
    assert backend.id == "7"
    assert backend.endpoint_url == "http://a:8000"
    assert backend.target_model == "org/m"
    assert backend.max_tokens == 99
    assert backend.timeout_seconds == 5.0


def test_model_names_excludes_models_with_all_backends_disabled(registry):
    registry.replace_stored(
        [
            _record(1, "off", enabled=False),
            _record(2, "off:latest", enabled=False, endpoint="http://b:1"),
            _record(3, "half", enabled=False),
            _record(4, "half", enabled=True, endpoint="http://b:1"),
            _record(5, "on"),
        ]
    )
    assert registry.model_names() == ["half", "on"]
    # disabled backends stay visible to callers that inspect them
    assert [b.id for b in registry.candidates("off")] == ["1", "2"]


def test_unchanged_record_keeps_its_adapter(registry):
    records = [_record(1, "m"), _record(2, "n", backend_type="ollama", endpoint="http://b:11434")]
    registry.replace_stored(records)
    before = {b.id: registry.adapter(b) for b in registry.backends}
    registry.replace_stored([dataclasses.replace(r) for r in records])
    after = {b.id: registry.adapter(b) for b in registry.backends}
    assert after["1"] is before["1"]
    assert after["2"] is before["2"]


def test_statistics_changes_do_not_replace_adapter(registry):
    registry.replace_stored([_record(1, "m")])
    before = registry.adapter(registry.backends[0])
    registry.replace_stored([_record(1, "m", total_requests=10, avg_latency_ms=3.5, avg_tokens_per_sec=40.0)])
    assert registry.adapter(registry.backends[0]) is before


def test_changed_record_gets_new_adapter(registry):
    registry.replace_stored([_record(1, "m"), _record(2, "n")])
    old = {b.id: registry.adapter(b) for b in registry.backends}
    registry.replace_stored([_record(1, "m", upstream_model="org/m"), _record(2, "n")])
    new = {b.id: registry.adapter(b) for b in registry.backends}
    assert new["1"] is not old["1"]
    assert new["1"].backend.upstream_model == "org/m"
    assert new["2"] is old["2"]
    # same endpoint and timeout: the pooled client is shared, not recreated
    assert new["1"].client is old["1"].client


def test_changed_backend_type_gets_adapter_of_new_class(registry):
    registry.replace_stored([_record(1, "m", backend_type="vllm")])
    registry.replace_stored([_record(1, "m", backend_type="ollama")])
    assert type(registry.adapter(registry.backends[0])) is OllamaAdapter


def test_removed_record_disappears(registry):
    registry.replace_stored([_record(1, "m"), _record(2, "n")])
    registry.replace_stored([_record(2, "n")])
    assert registry.model_names() == ["n"]
    assert registry.candidates("m") == ()
    assert [b.id for b in registry.backends] == ["2"]


def test_clients_are_pooled_per_endpoint_and_timeout(registry):
    registry.replace_stored(
        [
            _record(1, "a", endpoint="http://a:8000"),
            _record(2, "b", endpoint="http://a:8000/"),
            _record(3, "c", endpoint="http://b:8000"),
            _record(4, "d", endpoint="http://a:8000", timeout_seconds=5.0),
        ]
    )
    clients = {b.id: registry.adapter(b).client for b in registry.backends}
    assert clients["1"] is clients["2"]
    assert clients["3"] is not clients["1"]
    assert clients["4"] is not clients["1"]
    assert str(clients["3"].base_url).startswith("http://b:8000")


def test_close_closes_every_client():
    registry = BackendRegistry()
    registry.replace_stored([_record(1, "a"), _record(2, "b", endpoint="http://b:1")])
    clients = [registry.adapter(b).client for b in registry.backends]
    assert not any(c.is_closed for c in clients)
    asyncio.run(registry.close())
    assert all(c.is_closed for c in clients)
    # a later client for the same upstream is a fresh one
    fresh = registry.client_for("http://a:8000", 60.0)
    assert fresh not in clients
    assert not fresh.is_closed
    asyncio.run(registry.close())
    assert fresh.is_closed
