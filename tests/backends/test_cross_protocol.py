"""Cross-protocol behaviour of a real Inferhub process in front of fake Ollama, vLLM and TEI engines.

Every request goes through the official ``openai`` or ``ollama`` client, over HTTP, to one
``inferhub serve`` child whose ``inferhub.yaml`` declares the backends. The fakes are deterministic
(see ``tests/fakes``), so replies, token counts and embedding vectors are asserted exactly.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import orjson
import pytest

from fakes import BackgroundServer, create_fake_ollama_app, create_fake_tei_app, create_fake_vllm_app, hash_embedding
from support import InferhubProcess

OLLAMA_DIM = 12
TEI_DIM = 24
TUNED_MAX_TOKENS = 50
TUNED_TEMPERATURE = 0.25


def words(text: str) -> int:
    return len(text.split())


def echo(text: str) -> str:
    return f"echo: {text}"


def thought(text: str) -> str:
    return f"Let me think about: {text}"


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[BackgroundServer]:
    server = BackgroundServer(
        create_fake_ollama_app(("llama3.1:8b", "nomic-embed-text"), embedding_dim=OLLAMA_DIM)
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_vllm() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_vllm_app("deepseek-r1")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_vllm_new() -> Iterator[BackgroundServer]:
    """vLLM >= 0.11, which names the field ``reasoning`` instead of ``reasoning_content``."""
    server = BackgroundServer(create_fake_vllm_app("qwq-32b", reasoning_field="reasoning")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_tei() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_tei_app(dim=TEI_DIM, model_id="BAAI/bge-m3")).start()
    yield server
    server.stop()


BACKEND_NAMES = {"llama3.1:8b", "llama-tuned", "nomic-embed-text", "deepseek-r1", "qwq-32b", "bge-m3"}


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory,
    fake_ollama: BackgroundServer,
    fake_vllm: BackgroundServer,
    fake_vllm_new: BackgroundServer,
    fake_tei: BackgroundServer,
) -> Iterator[InferhubProcess]:
    backends: list[dict[str, Any]] = [
        {"model_name": "llama3.1:8b", "backend_type": "ollama", "endpoint_url": fake_ollama.url},
        {
            "model_name": "llama-tuned",
            "backend_type": "ollama",
            "endpoint_url": fake_ollama.url,
            "upstream_model": "llama3.1:8b",
            "max_tokens": TUNED_MAX_TOKENS,
            "temperature_default": TUNED_TEMPERATURE,
        },
        {"model_name": "nomic-embed-text", "backend_type": "ollama", "endpoint_url": fake_ollama.url},
        {"model_name": "deepseek-r1", "backend_type": "vllm", "endpoint_url": fake_vllm.url},
        {"model_name": "qwq-32b", "backend_type": "vllm", "endpoint_url": fake_vllm_new.url},
        {"model_name": "bge-m3", "backend_type": "tei", "endpoint_url": fake_tei.url},
    ]
    process = InferhubProcess(
        tmp_path_factory.mktemp("inferhub-cross"), local_models=False, config={"backends": backends}
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def oai(hub: InferhubProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{hub.url}/v1", api_key=hub.api_key, max_retries=0, timeout=30)


@pytest.fixture(scope="module")
def olc(hub: InferhubProcess) -> ollama.Client:
    return ollama.Client(host=hub.url, headers=hub.headers, timeout=30)


@pytest.fixture(scope="module")
def http(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def last_request(fake: BackgroundServer, path: str) -> dict[str, Any]:
    """The body of the last POST the fake received on ``path``."""
    calls = [c for c in fake.app.state.calls if c.method == "POST" and c.path == path]
    assert calls, f"the fake received no POST {path}"
    return calls[-1].body


def sse_events(response: httpx.Response) -> list[dict[str, Any]]:
    events = []
    for line in response.iter_lines():
        if line.startswith("data:"):
            payload = line[5:].strip()
            if payload != "[DONE]":
                events.append(orjson.loads(payload))
    return events


# -- OpenAI client → Ollama backend --------------------------------------------------------------


def test_openai_chat_to_ollama_returns_the_echo_and_the_engine_usage(
    oai: openai.OpenAI, fake_ollama: BackgroundServer
) -> None:
    text = "hello there wide world"
    response = oai.chat.completions.create(model="llama3.1:8b", messages=[{"role": "user", "content": text}])

    choice = response.choices[0]
    assert choice.message.content == echo(text)
    assert choice.message.role == "assistant"
    assert choice.finish_reason == "stop"
    assert response.model == "llama3.1:8b"
    assert response.usage is not None
    assert response.usage.prompt_tokens == words(text)
    assert response.usage.completion_tokens == words(echo(text))
    assert response.usage.total_tokens == words(text) + words(echo(text))
    sent = last_request(fake_ollama, "/api/chat")
    assert sent["model"] == "llama3.1:8b"
    assert sent["stream"] is False
    assert sent["messages"] == [{"role": "user", "content": text}]


def test_openai_chat_stream_to_ollama_with_usage(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    text = "stream me some words please"
    stream = oai.chat.completions.create(
        model="llama3.1:8b",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": text}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == echo(text)
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == words(echo(text))  # one word token per upstream NDJSON line
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert len({c.id for c in chunks}) == 1
    final = chunks[-1]
    assert final.choices == []
    assert final.usage is not None
    assert final.usage.prompt_tokens == words("be brief") + words(text)
    assert final.usage.completion_tokens == words(echo(text))
    assert all(c.usage is None for c in chunks[:-1])
    assert last_request(fake_ollama, "/api/chat")["stream"] is True


def test_openai_chat_stream_to_ollama_without_usage(oai: openai.OpenAI) -> None:
    text = "no usage wanted"
    chunks = list(
        oai.chat.completions.create(model="llama3.1:8b", messages=[{"role": "user", "content": text}], stream=True)
    )

    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == echo(text)
    assert all(c.choices for c in chunks), "a usage-only chunk was sent although include_usage was not set"
    assert all(c.usage is None for c in chunks)


def test_openai_completion_to_ollama_generate(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    prompt = "Once upon a time"
    response = oai.completions.create(model="llama3.1:8b", prompt=prompt, max_tokens=20)

    assert response.choices[0].text == echo(prompt)
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert response.usage.prompt_tokens == words(prompt)
    assert response.usage.completion_tokens == words(echo(prompt))
    sent = last_request(fake_ollama, "/api/generate")
    assert sent["prompt"] == prompt
    assert sent["raw"] is True  # an OpenAI completion is a raw prompt, no chat template
    assert sent["options"]["num_predict"] == 20


def test_openai_completion_stream_to_ollama(oai: openai.OpenAI) -> None:
    prompt = "count the tokens"
    chunks = list(
        oai.completions.create(model="llama3.1:8b", prompt=prompt, stream=True, stream_options={"include_usage": True})
    )

    assert "".join(c.choices[0].text for c in chunks if c.choices) == echo(prompt)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == words(echo(prompt))
    assert chunks[-1].usage.prompt_tokens == words(prompt)


def test_openai_embeddings_to_ollama_are_the_engine_vectors(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    inputs = ["first text to embed", "second"]
    response = oai.embeddings.create(model="nomic-embed-text", input=inputs)

    assert [d.index for d in response.data] == [0, 1]
    for item, text in zip(response.data, inputs, strict=True):
        assert len(item.embedding) == OLLAMA_DIM
        assert item.embedding == pytest.approx(hash_embedding(text, OLLAMA_DIM), abs=1e-6)
    assert response.data[0].embedding != pytest.approx(response.data[1].embedding, abs=1e-3)
    assert response.model == "nomic-embed-text"
    assert response.usage.prompt_tokens == sum(words(t) for t in inputs)
    assert last_request(fake_ollama, "/api/embed")["input"] == inputs


def test_openai_reasoning_effort_turns_on_ollama_thinking(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    text = "why is the sky blue"
    response = oai.chat.completions.create(
        model="llama3.1:8b", messages=[{"role": "user", "content": text}], reasoning_effort="low"
    )

    message = response.choices[0].message
    assert message.content == echo(text)
    assert (message.model_extra or {}).get("reasoning_content") == thought(text)
    assert last_request(fake_ollama, "/api/chat")["think"] is True


def test_openai_json_mode_and_stop_map_to_ollama(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    response = oai.chat.completions.create(
        model="llama3.1:8b", messages=[{"role": "user", "content": "data"}], response_format={"type": "json_object"}
    )
    assert last_request(fake_ollama, "/api/chat")["format"] == "json"
    assert orjson.loads(response.choices[0].message.content or "") == {"echo": "data"}

    response = oai.chat.completions.create(
        model="llama3.1:8b", messages=[{"role": "user", "content": "cut here please"}], stop="here"
    )
    assert last_request(fake_ollama, "/api/chat")["options"]["stop"] == ["here"]
    assert response.choices[0].message.content == "echo: cut "


def test_openai_stream_cut_by_max_tokens_ends_with_length(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="llama3.1:8b",
            messages=[{"role": "user", "content": "one two three four"}],
            max_tokens=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: one "
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


# -- backend defaults ----------------------------------------------------------------------------


def test_backend_defaults_apply_when_the_request_omits_them(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    response = oai.chat.completions.create(model="llama-tuned", messages=[{"role": "user", "content": "hi"}])

    options = last_request(fake_ollama, "/api/chat")["options"]
    assert options["num_predict"] == TUNED_MAX_TOKENS
    assert options["temperature"] == TUNED_TEMPERATURE
    assert last_request(fake_ollama, "/api/chat")["model"] == "llama3.1:8b"  # upstream_model
    assert response.model == "llama-tuned"
    assert response.choices[0].message.content == echo("hi")


def test_backend_defaults_do_not_override_the_request(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    text = "one two three four five six"
    response = oai.chat.completions.create(
        model="llama-tuned", messages=[{"role": "user", "content": text}], max_tokens=3, temperature=0.9
    )

    options = last_request(fake_ollama, "/api/chat")["options"]
    assert options["num_predict"] == 3
    assert options["temperature"] == 0.9
    assert response.choices[0].finish_reason == "length"
    assert response.choices[0].message.content == "echo: one two "
    assert response.usage is not None
    assert response.usage.completion_tokens == 3


def test_backend_defaults_do_not_override_a_zero_temperature(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    oai.chat.completions.create(model="llama-tuned", messages=[{"role": "user", "content": "hi"}], temperature=0)

    assert last_request(fake_ollama, "/api/chat")["options"]["temperature"] == 0


def test_backend_defaults_apply_to_ollama_requests(olc: ollama.Client, fake_ollama: BackgroundServer) -> None:
    olc.chat(model="llama-tuned", messages=[{"role": "user", "content": "hi"}], stream=False)
    options = last_request(fake_ollama, "/api/chat")["options"]
    assert options["num_predict"] == TUNED_MAX_TOKENS
    assert options["temperature"] == TUNED_TEMPERATURE

    olc.chat(
        model="llama-tuned",
        messages=[{"role": "user", "content": "hi"}],
        stream=False,
        options={"num_predict": 7, "temperature": 1.5},
    )
    options = last_request(fake_ollama, "/api/chat")["options"]
    assert options["num_predict"] == 7
    assert options["temperature"] == 1.5


# -- Ollama client → Ollama backend (translated through the OpenAI shape) -----------------------


def test_ollama_chat_to_ollama(olc: ollama.Client) -> None:
    text = "tell me something"
    response = olc.chat(model="llama3.1:8b", messages=[{"role": "user", "content": text}], stream=False)

    assert response.message.role == "assistant"
    assert response.message.content == echo(text)
    assert response.done is True
    assert response.done_reason == "stop"
    assert response.eval_count == words(echo(text))
    assert response.prompt_eval_count == words(text)
    assert response.model == "llama3.1:8b"


def test_ollama_chat_stream_to_ollama(olc: ollama.Client) -> None:
    text = "stream it back to me"
    parts = list(olc.chat(model="llama3.1:8b", messages=[{"role": "user", "content": text}], stream=True))

    assert "".join(p.message.content or "" for p in parts) == echo(text)
    assert [p.done for p in parts].count(True) == 1
    final = parts[-1]
    assert final.done is True
    assert final.done_reason == "stop"
    assert final.eval_count == words(echo(text))
    assert final.prompt_eval_count == words(text)
    assert all(not p.done for p in parts[:-1])
    assert len(parts) - 1 == words(echo(text))


def test_ollama_generate_to_ollama(olc: ollama.Client, fake_ollama: BackgroundServer) -> None:
    prompt = "write a haiku"
    response = olc.generate(model="llama3.1:8b", prompt=prompt, stream=False)

    assert response.response == echo(prompt)
    assert response.done is True
    assert response.eval_count == words(echo(prompt))
    assert response.prompt_eval_count == words(prompt)
    # A templated /api/generate becomes a chat request upstream.
    assert last_request(fake_ollama, "/api/chat")["messages"][-1] == {"role": "user", "content": prompt}


def test_ollama_generate_stream_to_ollama(olc: ollama.Client) -> None:
    prompt = "stream a generation"
    parts = list(olc.generate(model="llama3.1:8b", prompt=prompt, stream=True))

    assert "".join(p.response for p in parts) == echo(prompt)
    assert parts[-1].done is True
    assert parts[-1].eval_count == words(echo(prompt))
    assert all(not p.done for p in parts[:-1])


def test_ollama_generate_raw_to_ollama(olc: ollama.Client, fake_ollama: BackgroundServer) -> None:
    prompt = "raw prompt text"
    response = olc.generate(model="llama3.1:8b", prompt=prompt, raw=True, stream=False)

    assert response.response == echo(prompt)
    sent = last_request(fake_ollama, "/api/generate")
    assert sent["prompt"] == prompt
    assert sent["raw"] is True


def test_ollama_format_json_to_ollama(olc: ollama.Client, fake_ollama: BackgroundServer) -> None:
    response = olc.chat(model="llama3.1:8b", messages=[{"role": "user", "content": "as json"}], format="json")
    assert last_request(fake_ollama, "/api/chat")["format"] == "json"
    assert orjson.loads(response.message.content or "") == {"echo": "as json"}


def test_ollama_embed_to_ollama(olc: ollama.Client) -> None:
    inputs = ["alpha beta", "gamma"]
    response = olc.embed(model="nomic-embed-text", input=inputs)

    assert len(response.embeddings) == 2
    for vector, text in zip(response.embeddings, inputs, strict=True):
        assert len(vector) == OLLAMA_DIM
        assert list(vector) == pytest.approx(hash_embedding(text, OLLAMA_DIM), abs=1e-6)
    assert response.prompt_eval_count == 3


# -- Ollama client → OpenAI backend (fake vLLM with a reasoning parser) --------------------------


def test_ollama_chat_to_vllm_maps_reasoning_to_thinking(olc: ollama.Client, fake_vllm: BackgroundServer) -> None:
    text = "what is two plus two"
    response = olc.chat(model="deepseek-r1", messages=[{"role": "user", "content": text}], stream=False)

    assert response.message.thinking == thought(text)
    assert response.message.content == echo(text)
    assert response.done_reason == "stop"
    assert response.eval_count == words(thought(text)) + words(echo(text))
    assert response.prompt_eval_count == words(text)
    sent = last_request(fake_vllm, "/v1/chat/completions")
    assert sent["model"] == "deepseek-r1"
    assert not sent.get("stream")


def test_ollama_chat_stream_to_vllm_yields_thinking_then_content(
    olc: ollama.Client, fake_vllm: BackgroundServer
) -> None:
    text = "think before you answer"
    parts = list(olc.chat(model="deepseek-r1", messages=[{"role": "user", "content": text}], stream=True))

    assert last_request(fake_vllm, "/v1/chat/completions")["stream"] is True
    kinds = []
    for part in parts[:-1]:
        if part.message.thinking:
            kinds.append("thinking")
        if part.message.content:
            kinds.append("content")
    assert "thinking" in kinds and "content" in kinds
    first_content = kinds.index("content")
    assert all(k == "thinking" for k in kinds[:first_content])
    assert all(k == "content" for k in kinds[first_content:])
    assert "".join(p.message.thinking or "" for p in parts) == thought(text)
    assert "".join(p.message.content or "" for p in parts) == echo(text)
    final = parts[-1]
    assert final.done is True
    assert final.done_reason == "stop"
    assert final.eval_count == words(thought(text)) + words(echo(text))
    assert final.prompt_eval_count == words(text)


def test_ollama_generate_to_vllm(olc: ollama.Client, fake_vllm: BackgroundServer) -> None:
    prompt = "summarise the plot"
    response = olc.generate(model="deepseek-r1", prompt=prompt, system="you are terse", stream=False)

    assert response.response == echo(prompt)
    assert response.thinking == thought(prompt)
    assert response.done is True
    assert response.eval_count == words(thought(prompt)) + words(echo(prompt))
    sent = last_request(fake_vllm, "/v1/chat/completions")
    assert sent["messages"] == [
        {"role": "system", "content": "you are terse"},
        {"role": "user", "content": prompt},
    ]


def test_ollama_generate_stream_to_vllm(olc: ollama.Client) -> None:
    prompt = "stream from vllm"
    parts = list(olc.generate(model="deepseek-r1", prompt=prompt, stream=True))

    assert "".join(p.response for p in parts) == echo(prompt)
    assert "".join(p.thinking or "" for p in parts) == thought(prompt)
    assert parts[-1].done is True
    assert parts[-1].eval_count == words(thought(prompt)) + words(echo(prompt))


def test_ollama_chat_to_vllm_cut_inside_the_reasoning(olc: ollama.Client, fake_vllm: BackgroundServer) -> None:
    text = "a long question"
    response = olc.chat(
        model="deepseek-r1", messages=[{"role": "user", "content": text}], stream=False, options={"num_predict": 3}
    )

    assert last_request(fake_vllm, "/v1/chat/completions")["max_tokens"] == 3
    assert response.done_reason == "length"
    assert response.message.thinking == "Let me think "
    assert response.message.content == ""  # vLLM's content is null when the budget ends inside the reasoning
    assert response.eval_count == 3


def test_ollama_chat_to_vllm_reasoning_field(olc: ollama.Client) -> None:
    """vLLM >= 0.11 sends ``reasoning``; Ollama clients still get ``thinking``."""
    text = "newer vllm"
    response = olc.chat(model="qwq-32b", messages=[{"role": "user", "content": text}], stream=False)
    assert response.message.thinking == thought(text)
    assert response.message.content == echo(text)

    parts = list(olc.chat(model="qwq-32b", messages=[{"role": "user", "content": text}], stream=True))
    assert "".join(p.message.thinking or "" for p in parts) == thought(text)
    assert "".join(p.message.content or "" for p in parts) == echo(text)

    generated = olc.generate(model="qwq-32b", prompt=text, stream=False)
    assert generated.thinking == thought(text)


def test_openai_client_gets_the_vllm_reasoning_field_unchanged(oai: openai.OpenAI) -> None:
    text = "keep my field name"
    response = oai.chat.completions.create(model="qwq-32b", messages=[{"role": "user", "content": text}])
    extra = response.choices[0].message.model_extra or {}
    assert extra.get("reasoning") == thought(text)
    assert "reasoning_content" not in extra


def test_ollama_list_shows_every_configured_model(olc: ollama.Client) -> None:
    names = {m.model for m in olc.list().models}
    assert names == BACKEND_NAMES


def test_ollama_version_answers(hub: InferhubProcess) -> None:
    response = httpx.get(f"{hub.url}/api/version", timeout=10)
    assert response.status_code == 200
    version = response.json()["version"]
    assert isinstance(version, str)
    assert all(part.isdigit() for part in version.split("."))


# -- OpenAI client → vLLM: pass-through --------------------------------------------------------


def test_openai_chat_to_vllm_passes_reasoning_content(oai: openai.OpenAI) -> None:
    text = "explain recursion"
    response = oai.chat.completions.create(model="deepseek-r1", messages=[{"role": "user", "content": text}])

    message = response.choices[0].message
    assert message.content == echo(text)
    assert getattr(message, "reasoning_content", None) == thought(text)
    assert response.usage is not None
    assert response.usage.completion_tokens == words(thought(text)) + words(echo(text))
    assert response.usage.prompt_tokens == words(text)


def test_openai_chat_stream_to_vllm_passes_reasoning_deltas(oai: openai.OpenAI) -> None:
    text = "stream your reasoning"
    chunks = list(
        oai.chat.completions.create(
            model="deepseek-r1",
            messages=[{"role": "user", "content": text}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert reasoning == thought(text)
    assert "".join(d.content or "" for d in deltas) == echo(text)
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == words(thought(text)) + words(echo(text))


def test_openai_stream_from_vllm_passes_through_unchanged(http: httpx.Client) -> None:
    """The vLLM chunks reach the client as vLLM sent them: its ids, its ``stop_reason``, no usage asked."""
    body = {"model": "deepseek-r1", "messages": [{"role": "user", "content": "raw bytes"}], "stream": True}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)

    assert events and all(e["choices"] for e in events)  # the usage vLLM was asked for is hidden
    assert len({e["id"] for e in events}) == 1
    assert events[0]["id"].startswith("chatcmpl-")
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert "stop_reason" in events[-1]["choices"][0]
    reasoning = "".join(e["choices"][0]["delta"].get("reasoning_content") or "" for e in events)
    assert reasoning == thought("raw bytes")


def test_openai_completion_to_vllm(oai: openai.OpenAI) -> None:
    prompt = "plain completion"
    response = oai.completions.create(model="deepseek-r1", prompt=prompt, max_tokens=16)
    assert response.choices[0].text == echo(prompt)
    assert response.usage is not None
    assert response.usage.prompt_tokens == words(prompt)


# -- TEI native /embed --------------------------------------------------------------------------


def test_openai_embeddings_to_tei_use_native_embed(oai: openai.OpenAI, fake_tei: BackgroundServer) -> None:
    inputs = ["a sentence for tei", "another one"]
    response = oai.embeddings.create(model="bge-m3", input=inputs)

    assert response.model == "bge-m3"
    assert [d.index for d in response.data] == [0, 1]
    for item, text in zip(response.data, inputs, strict=True):
        assert len(item.embedding) == TEI_DIM
        assert item.embedding == pytest.approx(hash_embedding(text, TEI_DIM), abs=1e-6)
    assert response.usage.prompt_tokens > 0
    assert last_request(fake_tei, "/embed")["inputs"] == inputs


def test_ollama_embed_to_tei(olc: ollama.Client) -> None:
    response = olc.embed(model="bge-m3", input="single input")
    assert len(response.embeddings) == 1
    assert list(response.embeddings[0]) == pytest.approx(hash_embedding("single input", TEI_DIM), abs=1e-6)


def test_chat_to_an_embedding_only_backend_is_a_400(oai: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model="bge-m3", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 400
    assert raised.value.code == "unsupported_operation"

    response = http.post(
        "/v1/chat/completions", json={"model": "bge-m3", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_operation"
    assert error["type"] == "invalid_request_error"
    assert "bge-m3" in error["message"]


def test_ollama_chat_to_an_embedding_only_backend_is_a_400(olc: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        olc.chat(model="bge-m3", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert raised.value.status_code == 400
    assert "bge-m3" in raised.value.error


# -- model name matching ------------------------------------------------------------------------


def test_latest_tag_is_served_by_the_untagged_backend(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    response = oai.chat.completions.create(model="llama3.1:8b:latest", messages=[{"role": "user", "content": "tagged"}])
    assert response.choices[0].message.content == echo("tagged")
    assert response.model == "llama3.1:8b"
    assert last_request(fake_ollama, "/api/chat")["model"] == "llama3.1:8b"


def test_latest_tag_through_the_ollama_client(olc: ollama.Client) -> None:
    response = olc.chat(model="llama3.1:8b:latest", messages=[{"role": "user", "content": "tagged"}], stream=False)
    assert response.message.content == echo("tagged")


def test_unknown_model_is_a_404(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        oai.chat.completions.create(model="llama3.1:70b", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found"
