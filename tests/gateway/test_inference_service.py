"""InferenceService without HTTP: the real Meter (in-memory limit counters) and Gateway, a fake vLLM engine.

What every caller relies on: one usage record per call with the engine's tokens and the status, a refusal
by the limits answered 429 and recorded, a stream billed when it ends and when it is closed early (499,
its concurrency slot given back), and ``with_sink`` handing the record back instead of writing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from fakes import BackgroundServer, create_fake_vllm_app
from inferhub.errors import APIError
from inferhub.fleet.records import BackendRecord
from inferhub.gateway.limits import Limiter, MemoryCounters
from inferhub.gateway.metering import Meter, PriceCache, TenantCache
from inferhub.gateway.pipeline import Gateway
from inferhub.gateway.registry import BackendRegistry
from inferhub.gateway.service import Call, InferenceService, RecordCapture, RequestInfo
from inferhub.gateway.stats import StatsRecorder
from inferhub.tenancy.keys import KeyRecord
from inferhub.tenancy.tenants import TenantRecord
from inferhub.tenancy.usage import Price, UsageRecord

MODEL = "served"


class ListSink:
    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def add(self, record: UsageRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_vllm_app(model=MODEL)).start()
    yield server
    server.stop()


def _registry(url: str) -> BackendRegistry:
    registry = BackendRegistry()
    registry.replace_stored([BackendRecord(
        id=1, model_name=MODEL, backend_type="vllm", endpoint_url=url, upstream_model=None, enabled=True,
        max_tokens=None, temperature_default=None, timeout_seconds=10.0, description="", source="api", weight=1,
        priority=0, max_concurrency=None, draining=False, discover_models=False, credentials_encrypted=None,
        avg_tokens_per_sec=0.0, avg_latency_ms=0.0, total_requests=0, total_errors=0,
    )])  # fmt: skip
    return registry


def _key(key_id: int = 7, *, tenant_id: int | None = 3, allowed: tuple[str, ...] = (), **limits: float) -> KeyRecord:
    return KeyRecord(id=key_id, name="k", prefix=f"ih-k{key_id}", key_hash="x", scopes=("inference",),
                     created_at=datetime.now(UTC), expires_at=None, revoked_at=None, tenant_id=tenant_id,
                     allowed_models=allowed, limits=dict(limits))  # fmt: skip


class Pipeline:
    """The real service over a fake engine, with the usage records kept in a list."""

    def __init__(self, url: str, *, store_payloads: bool = False) -> None:
        self.registry = _registry(url)
        tenants, prices = TenantCache(), PriceCache()
        tenants.replace([TenantRecord(3, "acme", "", store_payloads=store_payloads)])
        prices.replace({MODEL: Price(Decimal(1), Decimal(2))})
        self.meter = Meter(Limiter(MemoryCounters()), tenants, prices)
        self.sink = ListSink()
        self.service = InferenceService(Gateway(self.registry, StatsRecorder(None)), self.meter, self.sink)

    def call(self, key: KeyRecord, *, stream: bool = False, endpoint: str = "/v1/chat/completions") -> Call:
        body = {"model": MODEL, "messages": [{"role": "user", "content": "say something short"}], "max_tokens": 8}
        if stream:
            body |= {"stream": True, "stream_options": {"include_usage": True}}
        return Call(self.service.caller(key), "chat", body, endpoint,
                    info=RequestInfo(client_ip="10.0.0.9", request_bytes=123))  # fmt: skip


def _run(url: str, scenario, **options):
    async def main():
        pipeline = Pipeline(url, **options)
        try:
            return await scenario(pipeline)
        finally:
            await pipeline.registry.close()

    return asyncio.run(main())


def test_a_call_leaves_one_usage_record_with_the_engines_tokens(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        result = await p.service.call(p.call(_key(rpm=10)))
        return result, list(p.sink.records)

    result, records = _run(engine.url, scenario)
    assert result.headers["x-inferhub-backend"] == "1" and result.headers["x-inferhub-model"] == MODEL
    assert result.headers["x-ratelimit-limit-requests"] == "10"  # the limits' headers reach the response
    assert len(records) == 1
    record, used = records[0], result.body["usage"]
    assert (record.status, record.endpoint, record.model, record.backend) == (200, "/v1/chat/completions", MODEL, "1")
    assert (record.prompt_tokens, record.completion_tokens) == (used["prompt_tokens"], used["completion_tokens"])
    assert record.completion_tokens > 0 and record.prompt_tokens > 0
    assert (record.key_id, record.tenant_id, record.client_ip, record.request_bytes) == (7, 3, "10.0.0.9", 123)
    assert record.response_bytes > 0 and record.prompt is None  # payloads are kept only when the tenant asks
    assert record.cost == Decimal(record.prompt_tokens + 2 * record.completion_tokens) / Decimal(1_000_000)


def test_payloads_are_kept_when_the_tenant_stores_them(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        result = await p.service.call(p.call(_key()))
        return result, p.sink.records

    result, records = _run(engine.url, scenario, store_payloads=True)
    assert records[0].prompt == [{"role": "user", "content": "say something short"}]
    assert records[0].completion == result.body["choices"][0]["message"]["content"]


def test_the_limits_refuse_with_429_and_the_refusal_is_recorded(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        key = _key(rpm=1)
        await p.service.call(p.call(key))
        with pytest.raises(APIError) as refused:
            await p.service.call(p.call(key))
        return refused.value, list(p.sink.records), len(engine.app.state.requests)

    before = len(engine.app.state.requests)
    error, records, after = _run(engine.url, scenario)
    assert error.status_code == 429 and error.code == "requests_per_minute_exceeded"
    assert error.headers["x-ratelimit-remaining-requests"] == "0" and "Retry-After" in error.headers
    assert [r.status for r in records] == [200, 429]
    assert (records[1].prompt_tokens, records[1].completion_tokens, records[1].backend) == (0, 0, None)
    assert after - before == 1  # the refused call never reached the engine


def test_a_model_outside_the_allow_list_is_refused_and_recorded(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        key = _key(allowed=("other-*",))
        with pytest.raises(APIError) as refused:
            await p.service.call(p.call(key))
        return refused.value, list(p.sink.records)

    error, records = _run(engine.url, scenario)
    assert error.status_code == 403 and error.code == "model_not_allowed"
    assert [r.status for r in records] == [403]


def test_a_stream_is_billed_when_it_ends(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        opened = await p.service.stream(p.call(_key(concurrency=1), stream=True))
        assert p.sink.records == []  # nothing is written before the stream ends
        events = [event.data async for event in opened.stream.events]
        return opened, events, list(p.sink.records)

    opened, events, records = _run(engine.url, scenario)
    assert opened.headers["x-inferhub-backend"] == "1"
    used = next(e["usage"] for e in events if e.get("usage"))
    assert len(records) == 1
    record = records[0]
    assert record.status == 200 and record.response_bytes > 0 and record.ttft_ms is not None
    assert (record.prompt_tokens, record.completion_tokens) == (used["prompt_tokens"], used["completion_tokens"])


def test_a_stream_closed_early_is_billed_as_499_and_gives_its_slot_back(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        key = _key(concurrency=1)
        opened = await p.service.stream(p.call(key, stream=True))
        events = opened.stream.events
        first = await events.__anext__()
        await events.aclose()  # the client went away after the first chunk
        records = list(p.sink.records)
        again = await p.service.call(p.call(key))  # concurrency=1: admitted only if the slot was given back
        return first, records, again

    first, records, again = _run(engine.url, scenario)
    assert first.data["choices"]
    assert len(records) == 1
    dropped = records[0]
    assert dropped.status == 499 and dropped.backend == "1"
    assert dropped.prompt_tokens > 0  # the prompt is billed (counted or estimated) though no usage came
    assert again.body["usage"]["completion_tokens"] > 0


def test_with_sink_hands_the_record_back_and_writes_nothing_to_the_live_sink(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        capture = RecordCapture()
        call = p.call(_key(), endpoint="/v1/jobs:chat.completions")
        call.info = RequestInfo(request_id="job:abc")
        result = await p.service.with_sink(capture).call(call)
        return result, capture.take(), capture.take(), list(p.sink.records)

    result, record, again, live = _run(engine.url, scenario)
    assert live == []
    assert record is not None and again is None  # taken once
    assert (record.request_id, record.endpoint, record.status) == ("job:abc", "/v1/jobs:chat.completions", 200)
    assert record.completion_tokens == result.body["usage"]["completion_tokens"]


def test_metered_work_records_its_tokens_and_an_error_with_its_status(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        caller = p.service.caller(_key())
        async with p.service.metered(Call(caller, "retrieval", {"model": MODEL}, "rag.retrieval")) as work:
            assert work.meta.party == "tenant:3"
            work.prompt_tokens = 11
        with pytest.raises(APIError):
            async with p.service.metered(Call(caller, "retrieval", {"model": MODEL}, "rag.retrieval")):
                raise APIError("the collection's engine refused", status_code=502)
        return list(p.sink.records)

    records = _run(engine.url, scenario)
    assert [(r.endpoint, r.status, r.prompt_tokens) for r in records] == [("rag.retrieval", 200, 11),
                                                                          ("rag.retrieval", 502, 0)]  # fmt: skip


def test_a_request_refused_before_the_pipeline_is_recorded_and_counts_nothing(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        key = _key(rpm=1)
        await p.service.refused(p.service.caller(key), endpoint="/v1/chat/completions", model=MODEL, status=400)
        result = await p.service.call(p.call(key))  # rpm=1 still has its one request
        return result, list(p.sink.records)

    _, records = _run(engine.url, scenario)
    assert [r.status for r in records] == [400, 200]


def test_a_bad_priority_header_is_a_recorded_400(engine: BackgroundServer) -> None:
    async def scenario(p: Pipeline):
        call = p.call(_key())
        call.info = RequestInfo(priority="urgent")
        with pytest.raises(APIError) as refused:
            await p.service.call(call)
        return refused.value, list(p.sink.records)

    error, records = _run(engine.url, scenario)
    assert error.status_code == 400 and error.param == "X-Priority"
    assert [r.status for r in records] == [400]
