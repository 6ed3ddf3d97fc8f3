"""No request can take a backend away from the other tenants (issue 13, "Isolation").

Against the real embedded llama.cpp (llama-cpp-python serving SmolLM2) and the embedded MiniLM: requests a
backend cannot serve are refused before they are forwarded (``unsupported_operation``), requests an engine
would refuse are refused by validation with a 400 naming the field, and what still reaches the engine and
is refused there comes back as ``backend_rejected``: none of them counts against the backend's circuit or
moves the request to another backend. The soak at the end sends a few hundred malformed requests from one
tenant while another streams.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import ollama
import openai
import pytest

from support import InferhubProcess

CHAT, EMBED = "smollm2", "all-minilm-l6-v2"
LOCAL_CHAT = f"local:{CHAT}"
HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def hub(tmp_path_factory, kit) -> Iterator[InferhubProcess]:
    # The default circuit (3 failures open it for 10 s): the setting the outage was seen with.
    process = InferhubProcess(tmp_path_factory.mktemp("backend-isolation"), api_key=kit.PLATFORM_KEY,
                              local_models=True, env=kit.fast_env())  # fmt: skip
    with process:
        yield process


@pytest.fixture(scope="module")
def http(hub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=120) as client:
        yield client


def _metric(http: httpx.Client, name: str, **labels: str) -> float | None:
    """The value of one sample on /metrics, or None when there is no such sample."""
    text = http.get("/metrics").text
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.index("}") + 1]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def assert_backend_healthy(http: httpx.Client, backend: str = LOCAL_CHAT) -> None:
    assert _metric(http, "llm_backend_circuit_state", backend=backend) == 0.0, "circuit not closed"
    assert _metric(http, "llm_backend_up", backend=backend) == 1.0
    # No failure was counted against it (the counter has no sample until the first one).
    assert not _metric(http, "llm_backend_errors_total", backend=backend)


def assert_chat_works(http: httpx.Client, model: str = CHAT) -> None:
    response = http.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 4})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["role"] == "assistant"


# -- the reproductions ------------------------------------------------------------------


def test_embeddings_asked_of_the_chat_model_are_refused_before_forwarding(http):
    for _ in range(3):
        response = http.post("/v1/embeddings", json={"model": CHAT, "input": "x"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "unsupported_operation"
        assert error["param"] == "model"
        assert "embeddings" in error["message"] and "chat" in error["message"]
    assert_chat_works(http)
    assert_backend_healthy(http)


def test_chat_asked_of_the_embedding_model_is_refused_the_same_way(http):
    response = http.post("/v1/chat/completions", json={"model": EMBED, "messages": HELLO})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "unsupported_operation"
    response = http.post("/api/embed", json={"model": CHAT, "input": "x"})
    assert response.status_code == 400, response.text
    assert "does not support embeddings" in response.json()["error"]


def test_a_tool_message_without_tool_call_id_is_a_400_naming_the_field(http, hub):
    body = {"model": CHAT, "messages": [{"role": "tool", "content": "x"}]}
    for _ in range(3):
        response = http.post("/v1/chat/completions", json=body)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "messages[0].tool_call_id", error
        assert error["message"].startswith("messages[0].tool_call_id:")
    client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=hub.api_key, max_retries=0)
    for _ in range(3):
        with pytest.raises(openai.BadRequestError, match="tool_call_id"):
            client.chat.completions.create(model=CHAT, messages=body["messages"], stream=True)  # type: ignore[arg-type]
    assert_chat_works(http)
    assert_backend_healthy(http)


def test_an_ollama_tool_message_is_answered_and_leaves_the_model_serving(http, hub):
    """Ollama's /api/chat has no tool_call_id: the gateway links the result to its call, llama.cpp answers."""
    client = ollama.Client(host=hub.url, headers=hub.headers, timeout=120)
    for _ in range(3):
        reply = client.chat(model=CHAT, messages=[{"role": "tool", "content": "x"}], options={"num_predict": 4})
        assert reply.message.role == "assistant"
    calls = [{"function": {"name": "weather", "arguments": {"city": "Paris"}}}]
    reply = client.chat(model=CHAT, options={"num_predict": 4}, messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "sunny", "tool_name": "weather"},
    ])  # fmt: skip
    assert reply.message.role == "assistant"
    response = http.post("/api/chat", json={"model": CHAT, "stream": False,
                                            "messages": [{"role": "robot", "content": "x"}]})  # fmt: skip
    assert response.status_code == 400 and "messages[0].role" in response.json()["error"], response.text
    assert_chat_works(http)
    assert_backend_healthy(http)


# -- what reaches the engine and is refused there -----------------------------------------------


@pytest.fixture(scope="module")
def engine_url(http) -> str:
    backends = http.get("/health").json()["backends"]
    return next(b["endpoint_url"] for b in backends if b["id"] == LOCAL_CHAT)


@pytest.fixture(scope="module")
def declared(http, engine_url) -> list[dict[str, Any]]:
    """Two registrations of the embedded llama.cpp under model ``declared``, one claiming embeddings."""
    created = []
    for url in (engine_url, engine_url.replace("127.0.0.1", "localhost")):
        response = http.post("/api/llm-backends", json={
            "model_name": "declared", "backend_type": "llamacpp", "endpoint_url": url, "upstream_model": CHAT,
            "capabilities": ["chat", "embeddings", "chat"], "discover_models": False,
        })  # fmt: skip
        assert response.status_code == 201, response.text
        assert response.json()["capabilities"] == ["chat", "embeddings"]
        created.append(response.json())

    def registered() -> bool:
        return http.post("/v1/chat/completions", json={"model": "declared", "messages": HELLO,
                                                       "max_tokens": 2}).status_code == 200  # fmt: skip

    assert registered() or _wait(registered)
    return created


def _wait(condition) -> bool:
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_the_engines_refusal_is_backend_rejected_and_not_a_fault(http, declared):
    ids = [str(b["id"]) for b in declared]
    for _ in range(4):
        # llama-cpp-python answers 500 "Llama model must be created with embedding=True".
        response = http.post("/v1/embeddings", json={"model": "declared", "input": "x"})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "backend_rejected"
        assert "embedding=True" in error["message"] and "llamacpp backend" in error["message"]
        assert error["backend"] in ids
    # Refused by the engine as too long for its context (400): not retried on the other backend.
    long_prompt = [{"role": "user", "content": "hello " * 3000}]
    response = http.post("/v1/chat/completions", json={"model": "declared", "messages": long_prompt})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "backend_rejected"
    assert not _metric(http, "llm_retries_total", model="declared")
    for backend in ids:
        assert_backend_healthy(http, backend)
    assert_chat_works(http, "declared")


def test_capabilities_are_declared_changed_and_reset_through_the_admin_api(http, declared):
    backend = declared[0]["id"]
    response = http.patch(f"/api/llm-backends/{backend}", json={"capabilities": ["bogus"]})
    assert response.status_code == 400, response.text
    response = http.patch(f"/api/llm-backends/{backend}", json={"capabilities": []})
    assert response.status_code == 400, response.text
    response = http.patch(f"/api/llm-backends/{backend}", json={"capabilities": None})
    assert response.status_code == 200 and response.json()["capabilities"] is None, response.text
    response = http.patch(f"/api/llm-backends/{backend}", json={"capabilities": ["chat", "embeddings"]})
    assert response.status_code == 200 and response.json()["capabilities"] == ["chat", "embeddings"]


# -- the soak -----------------------------------------------------------------------------------


def _bad_requests() -> list[tuple[str, dict[str, Any]]]:
    """Malformed but parseable requests, one of each shape (path, body)."""

    def chat(**fields: Any) -> tuple[str, dict[str, Any]]:
        return "/v1/chat/completions", {"model": CHAT, "messages": HELLO, "max_tokens": 4, **fields}

    def message(**fields: Any) -> tuple[str, dict[str, Any]]:
        return chat(messages=[fields])

    def ochat(**fields: Any) -> tuple[str, dict[str, Any]]:
        return "/api/chat", {"model": CHAT, "messages": HELLO, "stream": False, **fields}

    def user(content: Any) -> tuple[str, dict[str, Any]]:
        return message(role="user", content=content)

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    fn = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    shapes = [
        # messages
        chat(messages=None), chat(messages="hi"), chat(messages={}), chat(messages=[]), chat(messages=[1]),
        chat(messages=[None]), chat(messages=[[]]), chat(messages=[{}]),
        # roles
        message(content="x"), message(role="robot", content="x"), message(role=5, content="x"),
        message(role="USER", content="x"), message(role=None, content="x"), message(role="", content="x"),
        # content and its parts
        user(5), user({}), user(True), user([]), user(["x"]), user([{"text": "x"}]), user([{"type": "bogus"}]),
        user([{"type": "text"}]), user([{"type": "text", "text": 5}]), user([{"type": "image_url"}]),
        user([{"type": "image_url", "image_url": "http://x/y.png"}]),
        user([{"type": "image_url", "image_url": {"url": ""}}]),
        user([{"type": "image_url", "image_url": {"url": "http://x/y.png", "detail": "ultra"}}]),
        user([{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "ogg"}}]),
        user([{"type": "file", "file": {}}]), message(role="user"), message(role="system"),
        message(role="system", content=[{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]),
        message(role="assistant", content=[{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]),
        message(role="user", content="x", name=5), message(role="user", content="x", name=""),
        # tool and assistant messages
        message(role="tool", content="x"), message(role="tool", content="x", tool_call_id=5),
        message(role="tool", content="x", tool_call_id=""), message(role="tool", tool_call_id="c1"),
        message(role="tool", content=[{"type": "image_url", "image_url": {"url": "http://x"}}], tool_call_id="a"),
        message(role="assistant"), message(role="assistant", content=None),
        message(role="assistant", content=None, tool_calls="x"), message(role="assistant", tool_calls=[{}]),
        message(role="assistant", tool_calls=[{"id": "a"}]),
        message(role="assistant", tool_calls=[{**call, "function": {"name": "f", "arguments": {}}}]),
        message(role="assistant", tool_calls=[{**call, "type": "code"}]),
        message(role="assistant", tool_calls=[{**call, "id": ""}]),
        message(role="function", content="x"), message(role="assistant", content="x", refusal=5),
        # tools
        chat(tools="x"), chat(tools=[1]), chat(tools=[{"type": "function"}]), chat(tools=[{"type": "retrieval"}]),
        chat(tools=[{"type": "function", "function": {"name": ""}}]),
        chat(tools=[{"type": "function", "function": {"name": "a b"}}]),
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": "x"}}]),
        chat(tools=[fn], tool_choice="sometimes"), chat(tools=[fn], tool_choice={"type": "function"}),
        chat(tools=[fn], tool_choice={"type": "function", "function": {"name": "g"}}), chat(tool_choice=5),
        # numbers: wrong types, out of range, huge, negative
        chat(temperature=-1), chat(temperature=3), chat(temperature="hot"), chat(temperature=1e308),
        chat(top_p=2), chat(top_p=-0.5), chat(max_tokens=-1), chat(max_tokens=0), chat(max_tokens="10"),
        chat(max_tokens=1.5), chat(max_tokens=True), chat(n=0), chat(n=-1), chat(n=100000), chat(n="2"),
        chat(presence_penalty=5), chat(frequency_penalty=-3), chat(seed="x"), chat(seed=1.5),
        chat(seed=10**19), chat(top_logprobs=50), chat(logprobs="x"), chat(logit_bias="x"),
        chat(logit_bias={"1": 500}), chat(max_completion_tokens=-5),
        # other fields
        chat(stop=5), chat(stop=[1]), chat(stop=["a"] * 20), chat(response_format="json"),
        chat(response_format={"type": "xml"}), chat(response_format={"type": "json_schema"}),
        chat(stream="yes"), chat(stream_options="x"), chat(user=5), chat(parallel_tool_calls="x"),
        chat(model=5), chat(model=""), chat(model="no-such-model"), chat(model="x" * 300),
        # accepted by validation, refused by llama.cpp (backend_rejected)
        chat(messages=[{"role": "user", "content": "hello " * 3000}]),
        chat(messages=[{"role": "user", "content": "hello " * 3000}], stream=True),
        user([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]),
        chat(top_k=-3),  # (a json_schema response_format is served now: llama.cpp gets it as json_object+schema)
        chat(messages=[{"role": "assistant", "content": None, "tool_calls": [call]}]),
        chat(messages=[{"role": "tool", "content": "x", "tool_call_id": "a"}], top_k=-1, stream=True),
        # the wrong operation for the model
        ("/v1/embeddings", {"model": CHAT, "input": "x"}), ("/v1/embeddings", {"model": CHAT, "input": ["a", "b"]}),
        ("/v1/chat/completions", {"model": EMBED, "messages": HELLO}),
        ("/v1/completions", {"model": EMBED, "prompt": "x"}), ("/api/embed", {"model": CHAT, "input": "x"}),
        ("/api/generate", {"model": EMBED, "prompt": "x", "stream": False}),
        # completions and embeddings
        ("/v1/completions", {"model": CHAT}), ("/v1/completions", {"model": CHAT, "prompt": 5}),
        ("/v1/completions", {"model": CHAT, "prompt": []}), ("/v1/completions", {"model": CHAT, "prompt": [1]}),
        ("/v1/completions", {"model": CHAT, "prompt": "x", "echo": "x"}),
        ("/v1/completions", {"model": CHAT, "prompt": "hello " * 3000, "max_tokens": 4}),
        ("/v1/embeddings", {"model": EMBED}), ("/v1/embeddings", {"model": EMBED, "input": 5}),
        ("/v1/embeddings", {"model": EMBED, "input": []}), ("/v1/embeddings", {"model": EMBED, "input": [""]}),
        ("/v1/embeddings", {"model": EMBED, "input": [1, 2]}),
        ("/v1/embeddings", {"model": EMBED, "input": ["x"] * 3000}),
        # Ollama
        ochat(messages=None), ochat(messages=[{"role": "robot", "content": "x"}]),
        ochat(messages=[{"role": "user", "content": 5}]), ochat(messages=[{"role": "user", "content": [1]}]),
        ochat(messages=[{"role": "user", "content": "x", "images": "x"}]),
        ochat(messages=[{"role": "user", "content": "x", "images": [5]}]),
        ochat(messages=[{"role": "assistant", "content": "", "tool_calls": "x"}]),
        ochat(messages=[{"role": "assistant", "content": "", "tool_calls": [{"function": {}}]}]),
        ochat(messages=[{"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f",
                                                                                         "arguments": "x"}}]}]),
        ochat(messages=[{"role": "tool", "content": "x", "tool_name": 5}]), ochat(options="x"),
        ochat(options={"temperature": "hot"}), ochat(options={"top_k": "x"}), ochat(options={"num_ctx": 1.5}),
        ochat(options={"stop": "x"}), ochat(format="xml"), ochat(stream="yes"), ochat(tools=[{"type": "x"}]),
        ochat(messages=[{"role": "user", "content": "hello " * 3000}]),
        ("/api/generate", {"model": CHAT, "prompt": 5}), ("/api/generate", {"model": CHAT, "prompt": "x",
                                                                           "options": {"seed": "x"}}),
    ]  # fmt: skip
    return shapes


SOAK_REQUESTS = 300


def test_soak_one_tenants_bad_requests_do_not_reach_another_tenant(hub, http, platform_keys):
    key_a, key_b = platform_keys
    shapes = _bad_requests()
    requests = [shapes[i % len(shapes)] for i in range(SOAK_REQUESTS)]
    done = threading.Event()
    b_streams: list[int] = []
    b_errors: list[str] = []

    def tenant_b() -> None:
        client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=key_b, max_retries=0, timeout=120)
        while not done.is_set() or len(b_streams) < 3:
            try:
                stream = client.chat.completions.create(model=CHAT, messages=HELLO, max_tokens=8, stream=True)  # type: ignore[arg-type]
                finish = [c.choices[0].finish_reason for c in stream if c.choices and c.choices[0].finish_reason]
                if finish != [finish[0]] or finish[0] not in ("stop", "length"):
                    b_errors.append(f"stream ended with {finish}")
                b_streams.append(1)
            except Exception as exc:  # any error seen by tenant B fails the test
                b_errors.append(f"{type(exc).__name__}: {exc}")
                b_streams.append(1)

    statuses: Counter[int] = Counter()
    codes: Counter[str] = Counter()
    server_errors: list[str] = []

    def tenant_a(client: httpx.Client, path: str, body: dict[str, Any]) -> None:
        response = client.post(path, json=body)
        statuses[response.status_code] += 1
        error = response.json().get("error") if response.headers.get("content-type", "").startswith(
            "application/json") else None  # fmt: skip
        codes[error.get("code") if isinstance(error, dict) else ("ollama" if error else "none")] += 1
        if response.status_code >= 500 or response.status_code < 400:
            server_errors.append(f"{response.status_code} {path} {str(body)[:200]}: {response.text[:300]}")

    streamers = [threading.Thread(target=tenant_b) for _ in range(2)]
    for thread in streamers:
        thread.start()
    try:
        with (
            httpx.Client(base_url=hub.url, headers={"Authorization": f"Bearer {key_a}"}, timeout=120) as client,
            ThreadPoolExecutor(8) as pool,
        ):
            for future in [pool.submit(tenant_a, client, path, body) for path, body in requests]:
                future.result()
    finally:
        done.set()
        for thread in streamers:
            thread.join(timeout=300)
    circuit = _metric(http, "llm_backend_circuit_state", backend=LOCAL_CHAT)
    errors_counted = _metric(http, "llm_backend_errors_total", backend=LOCAL_CHAT) or 0
    print(
        f"\nisolation soak: {len(requests)} bad requests from tenant A ({len(shapes)} shapes), "
        f"status codes {dict(sorted(statuses.items()))}, error codes {dict(codes.most_common())}; "
        f"tenant B: {len(b_streams)} streams, {len(b_errors)} errors; "
        f"{LOCAL_CHAT}: circuit {'closed' if circuit == 0 else circuit}, backend errors counted {errors_counted:g}"
    )
    assert not server_errors, server_errors[:10]
    assert sum(statuses.values()) == SOAK_REQUESTS and all(400 <= s < 500 for s in statuses)
    assert not b_errors, b_errors[:10]
    assert codes["backend_rejected"] > 0  # some reached llama.cpp and were refused there
    assert_backend_healthy(http)
    assert_chat_works(http)


@pytest.fixture(scope="module")
def platform_keys(hub, kit) -> tuple[str, str]:
    api = kit.Api(hub.url, hub.api_key)
    try:
        keys = []
        for name in ("isolation-a", "isolation-b"):
            tenant = api.tenant(name)
            keys.append(api.key(tenant["id"], f"{name}-key")["key"])
        return keys[0], keys[1]
    finally:
        api.close()
