"""``GET /metrics``: the counters move with real traffic by exactly what was sent."""

from __future__ import annotations

import httpx
import openai
from prometheus_client.parser import text_string_to_metric_families

from support import InferhubProcess


def _samples(inferhub: InferhubProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{inferhub.url}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_tokens_and_ttft_are_counted(inferhub: InferhubProcess, openai_client: openai.OpenAI) -> None:
    before = _samples(inferhub)
    completion_tokens = 0
    for _ in range(3):
        reply = openai_client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        completion_tokens += reply.usage.completion_tokens
    chunks = list(openai_client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "hello"}], max_tokens=4, stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    completion_tokens += chunks[-1].usage.completion_tokens
    bad = httpx.post(f"{inferhub.url}/v1/chat/completions", headers=inferhub.headers, json={"model": "smollm2"})
    assert bad.status_code == 400
    after = _samples(inferhub)

    chat = {"endpoint": "/v1/chat/completions"}
    assert (
        _value(after, "llm_requests_total", **chat, status="200")
        - _value(before, "llm_requests_total", **chat, status="200")
        == 4
    )
    assert (
        _value(after, "llm_requests_total", **chat, status="400")
        - _value(before, "llm_requests_total", **chat, status="400")
        == 1
    )
    local = {"model": "smollm2", "backend": "local:smollm2"}
    assert (
        _value(after, "llm_tokens_generated_total", **local) - _value(before, "llm_tokens_generated_total", **local)
        == completion_tokens
    )
    assert (
        _value(after, "llm_time_to_first_token_seconds_count", **local)
        - _value(before, "llm_time_to_first_token_seconds_count", **local)
        == 1
    )
    assert (
        _value(after, "llm_inference_duration_seconds_count", **local)
        - _value(before, "llm_inference_duration_seconds_count", **local)
        == 4
    )
    assert (
        _value(after, "llm_request_duration_seconds_count", **chat)
        - _value(before, "llm_request_duration_seconds_count", **chat)
        == 5
    )


def test_state_gauges(inferhub: InferhubProcess) -> None:
    samples = _samples(inferhub)
    assert _value(samples, "llm_model_loaded", model="smollm2") == 1
    up = [
        v
        for (name, labels), v in samples.items()
        if name == "llm_backend_up" and ("backend", "local:smollm2") in labels
    ]
    assert up == [1.0]
    assert _value(samples, "llm_memory_usage_bytes") > 50_000_000
    assert ("llm_cpu_usage_percent", ()) in samples
    assert _value(samples, "llm_backend_circuit_state", model="smollm2", backend="local:smollm2") == 0


def test_unmatched_paths_share_one_label(inferhub: InferhubProcess) -> None:
    for path in ("/nope/1", "/nope/2", "/really/not/here"):
        httpx.get(f"{inferhub.url}{path}")
    endpoints = {dict(labels).get("endpoint") for (name, labels) in _samples(inferhub) if name == "llm_requests_total"}
    assert "unmatched" in endpoints
    assert not any(e and e.startswith("/nope") for e in endpoints)
