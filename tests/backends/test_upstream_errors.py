"""How a real Inferhub process reports upstream failures, on the OpenAI and the Ollama routes.

The fakes misbehave on demand (``app.state.fail_mode``): refuse the connection (a closed port), hang
past the backend's ``timeout_seconds``, answer garbage, answer 500, break a stream after its first
bytes, or not know the model. The gateway must answer 502/504 with a body that names the backend,
raise in the official clients while a stream is read, and never answer 500.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import ollama
import openai
import pytest

from fakes import BackgroundServer, create_fake_ollama_app, create_fake_vllm_app
from support import InferhubProcess, free_port

TIMEOUT = 1.0
MESSAGES = [{"role": "user", "content": "hello there world"}]
OLLAMA_MODEL, VLLM_MODEL = "llama3.1:8b", "deepseek-r1"
MODELS = [OLLAMA_MODEL, VLLM_MODEL]


@pytest.fixture(scope="module")
def fake_ollama() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_ollama_app((OLLAMA_MODEL,))).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_vllm() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_vllm_app(VLLM_MODEL)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def hub(
    tmp_path_factory: pytest.TempPathFactory,
    fake_ollama: BackgroundServer,
    fake_vllm: BackgroundServer,
    closed_url: str,
) -> Iterator[InferhubProcess]:
    backends: list[dict[str, Any]] = [
        {"model_name": OLLAMA_MODEL, "backend_type": "ollama", "endpoint_url": fake_ollama.url,
         "timeout_seconds": TIMEOUT},
        {"model_name": VLLM_MODEL, "backend_type": "vllm", "endpoint_url": fake_vllm.url, "timeout_seconds": TIMEOUT},
        {"model_name": "refused-ollama", "backend_type": "ollama", "endpoint_url": closed_url},
        {"model_name": "refused-vllm", "backend_type": "vllm", "endpoint_url": closed_url},
        {"model_name": "ghost", "backend_type": "ollama", "endpoint_url": fake_ollama.url,
         "upstream_model": "ghost:7b"},
        {"model_name": "ghost-vllm", "backend_type": "vllm", "endpoint_url": fake_vllm.url,
         "upstream_model": "not-served"},
    ]  # fmt: skip
    # Passive failure handling only: every request reaches its (failing) backend, so each fault shows
    # itself as it happens instead of as "out of rotation" (tests/gateway covers health and circuits).
    env = {"INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0", "INFERHUB_CIRCUIT_FAILURE_THRESHOLD": "1000",
           "INFERHUB_RETRY_ATTEMPTS": "1"}  # fmt: skip
    process = InferhubProcess(
        tmp_path_factory.mktemp("inferhub-upstream-errors"), local_models=False, config={"backends": backends}, env=env
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


@pytest.fixture(scope="module")
def fakes(fake_ollama: BackgroundServer, fake_vllm: BackgroundServer) -> dict[str, BackgroundServer]:
    return {OLLAMA_MODEL: fake_ollama, VLLM_MODEL: fake_vllm}


@pytest.fixture(autouse=True)
def healthy_fakes(fakes: dict[str, BackgroundServer]) -> Iterator[None]:
    """Every test starts and ends with well-behaved fakes."""

    def reset() -> None:
        for fake in fakes.values():
            state = fake.app.state
            state.fail_mode = None
            state.fail_times = None
            state.fail_paths = None
            state.hang_seconds = 10.0

    reset()
    try:
        yield
    finally:
        reset()


def fail(fake: BackgroundServer, mode: str) -> None:
    fake.app.state.fail_mode = mode


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """Check an OpenAI-route error answer and return its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert {"message", "type", "code"} <= set(error)
    assert isinstance(error["message"], str) and error["message"]
    assert error["type"] == "upstream_error"
    return error


def ollama_error(response: httpx.Response, status: int) -> str:
    """Check an Ollama-route error answer (``{"error": "..."}``) and return the message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"], str) and body["error"]
    return body["error"]


def chat_body(model: str, **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": MESSAGES, **extra}


# -- connection refused -------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["refused-ollama", "refused-vllm"])
def test_refused_connection_is_a_502_naming_the_backend(http: httpx.Client, closed_url: str, model: str) -> None:
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model)), 502)
    assert closed_url in error["message"]
    assert "refused" in error["message"]
    assert error["code"] == "backend_unreachable"

    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model, stream=True)), 502)
    assert closed_url in error["message"]

    error = openai_error(http.post("/v1/embeddings", json={"model": model, "input": "x"}), 502)
    assert closed_url in error["message"]


def test_refused_connection_through_the_openai_client(oai: openai.OpenAI, closed_url: str) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        oai.chat.completions.create(model="refused-ollama", messages=MESSAGES)
    assert raised.value.status_code == 502
    assert closed_url in raised.value.message
    assert raised.value.code == "backend_unreachable"


@pytest.mark.parametrize("stream", [False, True])
def test_refused_connection_on_ollama_routes(
    http: httpx.Client, olc: ollama.Client, closed_url: str, stream: bool
) -> None:
    message = ollama_error(http.post("/api/chat", json=chat_body("refused-ollama", stream=stream)), 502)
    assert closed_url in message
    message = ollama_error(
        http.post("/api/generate", json={"model": "refused-vllm", "prompt": "hi", "stream": stream}), 502
    )
    assert closed_url in message

    with pytest.raises(ollama.ResponseError) as raised:
        result = olc.chat(model="refused-vllm", messages=MESSAGES, stream=stream)
        if stream:  # a streamed call raises when the stream is read
            list(result)
    assert raised.value.status_code == 502
    assert closed_url in raised.value.error


# -- timeout ------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_hanging_upstream_is_a_504(http: httpx.Client, fakes: dict[str, BackgroundServer], model: str) -> None:
    fail(fakes[model], "hang")
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model)), 504)
    assert error["code"] == "backend_timeout"
    assert fakes[model].url in error["message"]

    # A stream that never starts is still answered with a status, before any byte.
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model, stream=True)), 504)
    assert error["code"] == "backend_timeout"


@pytest.mark.parametrize("model", MODELS)
def test_hanging_upstream_on_ollama_routes(
    http: httpx.Client, olc: ollama.Client, fakes: dict[str, BackgroundServer], model: str
) -> None:
    fail(fakes[model], "hang")
    message = ollama_error(http.post("/api/chat", json=chat_body(model, stream=False)), 504)
    assert fakes[model].url in message

    with pytest.raises(ollama.ResponseError) as raised:
        list(olc.chat(model=model, messages=MESSAGES, stream=True))
    assert raised.value.status_code == 504


# -- garbage and engine errors ------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_garbage_answer_is_a_502(http: httpx.Client, fakes: dict[str, BackgroundServer], model: str) -> None:
    fail(fakes[model], "garbage")
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model)), 502)
    assert error["code"] == "backend_invalid_response"
    assert fakes[model].url in error["message"]

    message = ollama_error(http.post("/api/chat", json=chat_body(model, stream=False)), 502)
    assert fakes[model].url in message


@pytest.mark.parametrize("model", MODELS)
def test_garbage_stream_raises_in_the_clients(
    oai: openai.OpenAI, olc: ollama.Client, fakes: dict[str, BackgroundServer], model: str
) -> None:
    fail(fakes[model], "garbage")
    with pytest.raises(openai.APIError) as raised:
        list(oai.chat.completions.create(model=model, messages=MESSAGES, stream=True))
    assert fakes[model].url in raised.value.message

    with pytest.raises(ollama.ResponseError) as ollama_raised:
        list(olc.chat(model=model, messages=MESSAGES, stream=True))
    assert fakes[model].url in ollama_raised.value.error


@pytest.mark.parametrize("model", MODELS)
def test_engine_500_is_a_502(http: httpx.Client, fakes: dict[str, BackgroundServer], model: str) -> None:
    fail(fakes[model], "500")
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model)), 502)
    assert "500" in error["message"]
    assert fakes[model].url in error["message"]
    assert "internal" in error["message"]  # the engine's own message is kept

    error = openai_error(http.post("/v1/completions", json={"model": model, "prompt": "hi", "stream": True}), 502)
    assert "500" in error["message"]

    message = ollama_error(http.post("/api/chat", json=chat_body(model, stream=True)), 502)
    assert fakes[model].url in message
    message = ollama_error(http.post("/api/generate", json={"model": model, "prompt": "hi", "stream": False}), 502)
    assert "500" in message


def test_engine_500_through_the_clients(oai: openai.OpenAI, olc: ollama.Client, fake_ollama: BackgroundServer) -> None:
    fail(fake_ollama, "500")
    with pytest.raises(openai.APIStatusError) as raised:
        oai.embeddings.create(model=OLLAMA_MODEL, input="x")
    assert raised.value.status_code == 502
    with pytest.raises(ollama.ResponseError) as ollama_raised:
        olc.embed(model=OLLAMA_MODEL, input="x")
    assert ollama_raised.value.status_code == 502
    assert fake_ollama.url in ollama_raised.value.error


def test_a_single_upstream_failure_does_not_stick(oai: openai.OpenAI, fake_ollama: BackgroundServer) -> None:
    fake_ollama.app.state.fail_times = 1
    fail(fake_ollama, "500")
    with pytest.raises(openai.APIStatusError):
        oai.chat.completions.create(model=OLLAMA_MODEL, messages=MESSAGES)
    response = oai.chat.completions.create(model=OLLAMA_MODEL, messages=MESSAGES)
    assert response.choices[0].message.content == "echo: hello there world"


# -- broken streams -----------------------------------------------------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_broken_stream_raises_in_the_openai_client(
    oai: openai.OpenAI, fakes: dict[str, BackgroundServer], model: str
) -> None:
    fail(fakes[model], "break_stream")
    stream = oai.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    received = []
    with pytest.raises(openai.APIError) as raised:
        for chunk in stream:
            received.append(chunk)
    assert received, "the chunks sent before the break should reach the client"
    assert fakes[model].url in raised.value.message
    assert "streaming" in raised.value.message
    assert isinstance(raised.value.body, dict)
    assert raised.value.body["type"] == "upstream_error"


@pytest.mark.parametrize("model", MODELS)
def test_broken_stream_raises_in_the_ollama_client(
    olc: ollama.Client, fakes: dict[str, BackgroundServer], model: str
) -> None:
    fail(fakes[model], "break_stream")
    received = []
    with pytest.raises(ollama.ResponseError) as raised:
        for part in olc.chat(model=model, messages=MESSAGES, stream=True):
            received.append(part)
    assert all(not p.done for p in received), "a broken stream must not end with a done line"
    assert fakes[model].url in raised.value.error


def test_broken_ollama_stream_keeps_the_text_before_the_break(
    oai: openai.OpenAI, fake_ollama: BackgroundServer
) -> None:
    fail(fake_ollama, "break_stream")  # the fake sends two NDJSON lines, then drops the connection
    received = []
    with pytest.raises(openai.APIError):
        for chunk in oai.chat.completions.create(model=OLLAMA_MODEL, messages=MESSAGES, stream=True):
            received.append(chunk)
    assert "".join(c.choices[0].delta.content or "" for c in received if c.choices) == "echo: hello "
    assert all(c.choices[0].finish_reason is None for c in received if c.choices)


@pytest.mark.parametrize("model", MODELS)
def test_a_stream_dropped_before_its_first_event_by_a_live_engine_is_backend_rejected(
    oai: openai.OpenAI, http: httpx.Client, fakes: dict[str, BackgroundServer], model: str
) -> None:
    """A 200 and then a dropped connection, from an engine that still answers its health check, is what
    llama-cpp-python does with a prompt longer than its context: a 400 before the response starts."""

    def errors_counted() -> list[str]:
        return [line for line in http.get("/metrics").text.splitlines()
                if line.startswith("llm_backend_errors_total{") and f'model="{model}"' in line]  # fmt: skip

    before = errors_counted()
    fail(fakes[model], "drop_stream")
    with pytest.raises(openai.BadRequestError) as raised:
        oai.chat.completions.create(model=model, messages=MESSAGES, stream=True)
    assert raised.value.code == "backend_rejected"
    assert fakes[model].url in raised.value.message and "before answering" in raised.value.message
    response = http.post("/api/chat", json=chat_body(model, stream=True))
    assert response.status_code == 400 and "before answering" in response.json()["error"], response.text
    assert errors_counted() == before


@pytest.mark.parametrize("model", MODELS)
def test_truncated_body_is_a_502(http: httpx.Client, fakes: dict[str, BackgroundServer], model: str) -> None:
    fail(fakes[model], "break_stream")  # a non-streamed body cut in the middle
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model)), 502)
    assert fakes[model].url in error["message"]
    ollama_error(http.post("/api/chat", json=chat_body(model, stream=False)), 502)


# -- the upstream does not know the model -------------------------------------------------------


@pytest.mark.parametrize(("model", "upstream"), [("ghost", "ghost:7b"), ("ghost-vllm", "not-served")])
def test_model_missing_upstream_is_reported(http: httpx.Client, olc: ollama.Client, model: str, upstream: str) -> None:
    error = openai_error(http.post("/v1/chat/completions", json=chat_body(model)), 502)
    assert error["code"] == "backend_model_missing"
    assert "404" in error["message"]
    assert upstream in error["message"]

    message = ollama_error(http.post("/api/chat", json=chat_body(model, stream=False)), 502)
    assert upstream in message
    with pytest.raises(ollama.ResponseError) as raised:
        list(olc.chat(model=model, messages=MESSAGES, stream=True))
    assert raised.value.status_code == 502
    assert upstream in raised.value.error


# -- after all of it ----------------------------------------------------------------------------


def test_no_failure_was_answered_with_a_500(hub: InferhubProcess, oai: openai.OpenAI) -> None:
    """Every failure above was an upstream's: the server logged no unhandled error and still works."""
    response = oai.chat.completions.create(model=VLLM_MODEL, messages=MESSAGES)
    assert response.choices[0].message.content == "echo: hello there world"
    assert not [e for e in hub.log_events() if e.get("event") == "unhandled_error"]
    assert "Traceback" not in hub.output()
