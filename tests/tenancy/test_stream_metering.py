"""A stream bills what the same request bills without streaming, on the real embedded llama.cpp.

llama-cpp-python streams without usage, so the gateway counts a stream's prompt itself. It used to count
the messages' text without the chat template (18 tokens where the engine, without streaming, reports 31).
Each request below is sent four times from one tenant's key (OpenAI and Ollama protocols, streamed and not,
through the official clients): the prompt tokens agree everywhere (the usage chunk, ``prompt_eval_count``,
the usage records and the tenant's token budget). A stream dropped before its end is billed its real
prompt and the tokens streamed so far, not 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import ollama
import openai
import pytest

MODEL = "smollm2"
SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in a few words."}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
REQUESTS: dict[str, dict[str, Any]] = {
    "system-user": {"messages": [SYSTEM, {"role": "user", "content": "Name one colour of the rainbow."}]},
    "multi-turn": {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ]
    },
    "tools": {
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
    },
}
MONTHLY_TOKENS = 100_000_000  # a budget, so the tenant's token counter runs; never reached


@pytest.fixture(scope="module")
def platform(inferhub, kit) -> Iterator[Any]:
    api = kit.Api(inferhub.url, inferhub.api_key)
    yield api
    api.close()


def _tenant_key(platform: Any, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    tenant = platform.tenant(f"stream-metering-{name}", limits={"monthly_tokens": MONTHLY_TOKENS})
    return tenant, platform.key(tenant["id"], name)


def _clients(inferhub: Any, key: str) -> tuple[openai.OpenAI, ollama.Client]:
    return (
        openai.OpenAI(base_url=f"{inferhub.url}/v1", api_key=key, max_retries=0, timeout=120),
        ollama.Client(host=inferhub.url, headers={"Authorization": f"Bearer {key}"}, timeout=120),
    )


def _openai(client: openai.OpenAI, request: dict[str, Any], *, stream: bool) -> tuple[int, int]:
    common = {"model": MODEL, "max_tokens": 8, "temperature": 0, **request}
    if not stream:
        usage = client.chat.completions.create(**common).usage
        return usage.prompt_tokens, usage.completion_tokens
    chunks = list(client.chat.completions.create(**common, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices, "the last chunk carries the usage"
    return usage.prompt_tokens, usage.completion_tokens


def _ollama(client: ollama.Client, request: dict[str, Any], *, stream: bool) -> tuple[int, int]:
    common = {"model": MODEL, "options": {"num_predict": 8, "temperature": 0}, **request}
    if not stream:
        answer = client.chat(**common)
        return answer.prompt_eval_count, answer.eval_count
    final = list(client.chat(**common, stream=True))[-1]
    assert final.done
    return final.prompt_eval_count, final.eval_count


@pytest.mark.parametrize("name", list(REQUESTS))
def test_a_stream_bills_the_prompt_tokens_of_the_same_request_without_streaming(inferhub, platform, kit, name):
    tenant, key = _tenant_key(platform, name)
    openai_client, ollama_client = _clients(inferhub, key["key"])
    request = REQUESTS[name]

    answers = {
        ("openai", "non-stream"): _openai(openai_client, request, stream=False),
        ("openai", "stream"): _openai(openai_client, request, stream=True),
        ("ollama", "non-stream"): _ollama(ollama_client, request, stream=False),
        ("ollama", "stream"): _ollama(ollama_client, request, stream=True),
    }
    engine_count = answers["openai", "non-stream"][0]  # what llama.cpp itself reports, chat template applied
    assert engine_count > 0
    assert {way: prompt for way, (prompt, _) in answers.items()} == dict.fromkeys(answers, engine_count), answers

    # The usage records and the tenant's budget take the same numbers as the clients were told.
    records = kit.wait_until(
        lambda: len(rows := platform.request_log(key_id=key["id"])) == len(answers) and rows,
        "the four usage records",
        timeout=30,
    )
    assert all(r["status"] == 200 for r in records), records
    told = Counter(answers.values())
    assert Counter((r["prompt_tokens"], r["completion_tokens"]) for r in records) == told
    budget = platform.ok("GET", f"/api/tenants/{tenant['id']}")["budget_used"]
    assert budget["monthly_tokens"] == sum(prompt + completion for prompt, completion in answers.values())


def test_a_dropped_stream_bills_its_prompt_and_the_tokens_streamed_so_far(inferhub, platform, kit):
    tenant, key = _tenant_key(platform, "dropped")
    openai_client, ollama_client = _clients(inferhub, key["key"])
    messages = [SYSTEM, {"role": "user", "content": "Count from one to five hundred, one number per line."}]
    engine_count = _openai(openai_client, {"messages": messages}, stream=False)[0]
    kit.wait_until(lambda: platform.request_log(key_id=key["id"]), "the usage record of the first request")

    # OpenAI protocol: leave after the first chunk with text (max_tokens keeps the engine busy long after).
    stream = openai_client.chat.completions.create(model=MODEL, messages=messages, max_tokens=1500, stream=True)
    next(chunk for chunk in stream if chunk.choices and chunk.choices[0].delta.content)
    stream.close()
    # Ollama protocol: the same, by closing the client's line iterator.
    lines = ollama_client.chat(model=MODEL, messages=messages, options={"num_predict": 1500}, stream=True)
    next(line for line in lines if line.message.content)
    lines.close()

    dropped = kit.wait_until(
        lambda: len(rows := platform.request_log(key_id=key["id"], status=499)) == 2 and rows,
        "the usage records of the two dropped streams",
        timeout=60,
    )
    assert sorted(r["endpoint"] for r in dropped) == ["/api/chat", "/v1/chat/completions"]
    for record in dropped:
        assert record["prompt_tokens"] == engine_count, record
        assert record["completion_tokens"] > 0, record
    budget = platform.ok("GET", f"/api/tenants/{tenant['id']}")["budget_used"]
    all_records = platform.request_log(key_id=key["id"])
    assert budget["monthly_tokens"] == sum(r["prompt_tokens"] + r["completion_tokens"] for r in all_records)


def test_a_streamed_completion_bills_the_prompt_of_the_same_request(inferhub, platform, kit):
    """Text completions (OpenAI ``/v1/completions``, Ollama ``/api/generate`` with and without ``raw``)."""
    _, key = _tenant_key(platform, "completions")
    openai_client, ollama_client = _clients(inferhub, key["key"])
    prompt = "The three primary colours are"
    common = {"model": MODEL, "prompt": prompt, "max_tokens": 8, "temperature": 0}
    plain = openai_client.completions.create(**common).usage.prompt_tokens
    streamed = list(openai_client.completions.create(**common, stream=True, stream_options={"include_usage": True}))
    assert streamed[-1].usage is not None
    assert streamed[-1].usage.prompt_tokens == plain > 0
    for raw in (False, True):
        options = {"num_predict": 8, "temperature": 0}
        once = ollama_client.generate(model=MODEL, prompt=prompt, raw=raw, options=options).prompt_eval_count
        final = list(ollama_client.generate(model=MODEL, prompt=prompt, raw=raw, options=options, stream=True))[-1]
        assert final.done and final.prompt_eval_count == once > 0, (raw, once, final.prompt_eval_count)
