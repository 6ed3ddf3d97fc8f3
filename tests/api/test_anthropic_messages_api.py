"""The official ``anthropic`` SDK against a real Inferhub: ``/v1/messages`` on the embedded SmolLM2 and on a
fake vLLM engine that calls tools (``tests/fakes/tool_engine.py``), over HTTP, with a tenant's key.

The route is a translation in front of the one pipeline, so what is checked here is what the translation
and the pipeline owe the client together: the SDK parses every answer and every stream, tool calls and
results reach the engine in the OpenAI shape, the usage record on the tenant's bill carries the engine's
token counts, and errors come back in Anthropic's shape (the SDK's typed exceptions).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import pytest

from fakes import BackgroundServer, create_fake_tool_engine_app
from inferhub.api.context import AppContext
from inferhub.app import create_app
from inferhub.errors import UpstreamError
from support import InferhubProcess

EMBEDDED = "smollm2"
TOOLS_MODEL = "tool-model"
WEATHER = {
    "name": "get_weather",
    "description": "The current weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
GREEDY = {"temperature": 0}  # SDK 2.x has no temperature parameter: the API still takes it
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.1)
    return result


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_tool_engine_app(TOOLS_MODEL)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, engine: BackgroundServer) -> Iterator[InferhubProcess]:
    backends = [{"model_name": TOOLS_MODEL, "backend_type": "vllm", "endpoint_url": engine.url,
                 "discover_models": False}]  # fmt: skip
    process = InferhubProcess(
        tmp_path_factory.mktemp("inferhub-messages"),
        config={"backends": backends},
        env={"INFERHUB_USAGE_FLUSH_SECONDS": "0.2", "INFERHUB_HEALTH_CHECK_INTERVAL_SECONDS": "0"},
    )
    with process:
        yield process


@pytest.fixture(scope="module")
def admin(hub: InferhubProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, headers=hub.headers, timeout=30) as client:
        yield client


def _tenant_key(hub: InferhubProcess, admin: httpx.Client, name: str, **tenant: Any) -> dict[str, Any]:
    created = admin.post("/api/tenants", json={"name": f"messages-{name}", **tenant})
    assert created.status_code == 201, created.text
    key = admin.post(f"/api/tenants/{created.json()['id']}/keys", json={"name": name})
    assert key.status_code == 201, key.text
    record = key.json()
    wait_until(
        lambda: httpx.get(f"{hub.url}/v1/models", headers={"x-api-key": record["key"]}).status_code == 200,
        "the new key to reach the process",
    )
    return record


@pytest.fixture(scope="module")
def key(hub: InferhubProcess, admin: httpx.Client) -> dict[str, Any]:
    return _tenant_key(hub, admin, "main")


@pytest.fixture(scope="module")
def client(hub: InferhubProcess, key: dict[str, Any]) -> anthropic.Anthropic:
    """The SDK as Claude Code configures it with ANTHROPIC_API_KEY: the key in ``x-api-key``."""
    return anthropic.Anthropic(base_url=hub.url, api_key=key["key"], max_retries=0, timeout=120)


def _records(admin: httpx.Client, key_id: int, count: int) -> list[dict[str, Any]]:
    def rows() -> list[dict[str, Any]] | None:
        data = admin.get("/api/request-log", params={"key_id": key_id, "limit": 1000}).json()["data"]
        return data if len(data) >= count else None

    return wait_until(rows, f"{count} usage records of key {key_id}")


# -- the embedded model ---------------------------------------------------------------------------


def test_create_answers_text_with_usage_and_leaves_the_engines_counts_on_the_bill(
    hub: InferhubProcess, admin: httpx.Client
) -> None:
    key = _tenant_key(hub, admin, "billed")
    sdk = anthropic.Anthropic(base_url=hub.url, api_key=key["key"], max_retries=0, timeout=120)
    message = sdk.messages.create(
        model=EMBEDDED, max_tokens=12, extra_body=GREEDY, system="Answer in a few words.",
        messages=[{"role": "user", "content": "Name a colour."}],
    )  # fmt: skip
    assert message.type == "message" and message.role == "assistant" and message.model == EMBEDDED
    assert message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 12

    [record] = _records(admin, key["id"], 1)
    assert record["endpoint"] == "/v1/messages" and record["status"] == 200 and record["model"] == EMBEDDED
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        message.usage.input_tokens,
        message.usage.output_tokens,
    )


def test_count_tokens_equals_the_input_tokens_the_engine_reports(client: anthropic.Anthropic) -> None:
    request: dict[str, Any] = {
        "model": EMBEDDED, "system": "You are terse.",
        "messages": [{"role": "user", "content": "What is the capital of France?"},
                     {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}],
    }  # fmt: skip
    counted = client.messages.count_tokens(**request).input_tokens
    used = client.messages.create(**request, max_tokens=4, extra_body=GREEDY).usage.input_tokens
    assert counted == used > 10


def test_stream_sends_text_deltas_and_the_final_message(hub: InferhubProcess, admin: httpx.Client) -> None:
    key = _tenant_key(hub, admin, "streamed")
    client = anthropic.Anthropic(base_url=hub.url, api_key=key["key"], max_retries=0, timeout=120)
    with client.messages.stream(
        model=EMBEDDED, max_tokens=16, extra_body=GREEDY, messages=[{"role": "user", "content": "Count to five."}]
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    deltas = [e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta"]
    assert len(deltas) > 1
    assert final.content[0].type == "text" and final.content[0].text == "".join(deltas)
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.input_tokens > 0 and 0 < final.usage.output_tokens <= 16
    start = next(e for e in events if e.type == "message_start")
    assert start.message.usage.input_tokens == final.usage.input_tokens  # counted before the first token
    [record] = _records(admin, key["id"], 1)
    assert record["endpoint"] == "/v1/messages" and record["status"] == 200
    assert (record["prompt_tokens"], record["completion_tokens"]) == (
        final.usage.input_tokens,
        final.usage.output_tokens,
    )


def test_bearer_auth_works_too(hub: InferhubProcess, key: dict[str, Any]) -> None:
    """ANTHROPIC_AUTH_TOKEN: the SDK sends the key as ``Authorization: Bearer``."""
    sdk = anthropic.Anthropic(base_url=hub.url, auth_token=key["key"], max_retries=0, timeout=120)
    message = sdk.messages.create(model=EMBEDDED, max_tokens=2, messages=[{"role": "user", "content": "Hi"}])
    assert message.usage.output_tokens > 0


def test_beta_headers_and_query_are_accepted(client: anthropic.Anthropic) -> None:
    message = client.beta.messages.create(
        model=EMBEDDED, max_tokens=2, messages=[{"role": "user", "content": "Hi"}],
        betas=["interleaved-thinking-2025-05-14", "an-unknown-beta"],
    )  # fmt: skip
    assert message.content[0].type == "text"


def test_models_list_in_anthropics_shape(client: anthropic.Anthropic, hub: InferhubProcess) -> None:
    page = client.models.list(limit=100)
    ids = {model.id for model in page.data}
    assert {EMBEDDED, TOOLS_MODEL} <= ids
    assert all(model.type == "model" and model.display_name == model.id for model in page.data)
    assert page.first_id == page.data[0].id and page.has_more is False
    # Without anthropic-version the OpenAI list, unchanged.
    plain = httpx.get(f"{hub.url}/v1/models", headers=hub.headers).json()
    assert plain["object"] == "list" and all(m["object"] == "model" for m in plain["data"])


# -- errors in Anthropic's shape --------------------------------------------------------------------


def test_a_bad_key_is_an_authentication_error(hub: InferhubProcess) -> None:
    sdk = anthropic.Anthropic(base_url=hub.url, api_key="ih-not-a-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        sdk.messages.create(model=EMBEDDED, max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.status_code == 401
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == "authentication_error"


def test_missing_max_tokens_is_a_bad_request_naming_the_field(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model=EMBEDDED, max_tokens=anthropic.omit, messages=[{"role": "user", "content": "Hi"}])
    error = raised.value.body["error"]
    assert error["type"] == "invalid_request_error" and error["message"].startswith("max_tokens:")


def test_an_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as raised:
        client.messages.create(model="no-such-model", max_tokens=4, messages=[{"role": "user", "content": "Hi"}])
    assert raised.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="no-such-model", messages=[{"role": "user", "content": "Hi"}])


def test_a_rate_limit_is_a_429_with_retry_after(hub: InferhubProcess, admin: httpx.Client) -> None:
    key = _tenant_key(hub, admin, "limited", limits={"rpm": 1})
    sdk = anthropic.Anthropic(base_url=hub.url, api_key=key["key"], max_retries=0, timeout=120)
    request: dict[str, Any] = {"model": TOOLS_MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]}
    sdk.messages.create(**request)
    with pytest.raises(anthropic.RateLimitError) as raised:
        sdk.messages.create(**request)
    assert raised.value.body["error"]["type"] == "rate_limit_error"
    assert int(raised.value.response.headers["retry-after"]) >= 1


def test_transport_level_errors_are_in_anthropics_shape() -> None:
    """Errors answered outside the routes' own code: the body-size limit's 413, an unknown path's 404, a NUL
    byte in the query, an overload (503 → 529) and an unexpected failure."""
    app = create_app(AppContext(gateway=None, registry=None, keys=None), max_body_bytes=64)  # type: ignore[arg-type]

    async def overloaded() -> None:
        raise UpstreamError("no backend can take the request", status_code=503, headers={"Retry-After": "3"})

    async def broken() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/v1/messages/overloaded", overloaded)
    app.add_api_route("/v1/messages/broken", broken)

    async def send() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://inferhub") as http:
            return [
                await http.post("/v1/messages", content=b"x" * 100, headers={"content-type": "application/json"}),
                await http.post("/v1/messages/batches", json={}),
                await http.post("/v1/messages?beta=%00", json={}),
                await http.get("/v1/messages/overloaded"),
                await http.get("/v1/messages/broken"),
            ]

    too_large, unknown, nul, overloaded_reply, broken_reply = asyncio.run(send())
    assert too_large.status_code == 413 and too_large.json()["error"]["type"] == "request_too_large"
    assert unknown.status_code in (404, 405) and unknown.json()["type"] == "error"
    assert nul.status_code == 400 and nul.json()["error"]["type"] == "invalid_request_error"
    # Inferhub's 503 (no backend free) is Anthropic's 529, its retry-after kept; a bug is a 500 api_error.
    assert overloaded_reply.status_code == 529 and overloaded_reply.json()["error"]["type"] == "overloaded_error"
    assert overloaded_reply.headers["retry-after"] == "3"
    assert broken_reply.status_code == 500 and broken_reply.json()["error"]["type"] == "api_error"
    assert "secret internals" not in broken_reply.text
    for reply in (too_large, unknown, nul, overloaded_reply, broken_reply):
        assert set(reply.json()) == {"type", "error"} and reply.json()["error"]["message"]


# -- tools, through a fake vLLM engine --------------------------------------------------------------


def test_tool_use_and_a_tool_result_round_trip(client: anthropic.Anthropic, engine: BackgroundServer) -> None:
    first = client.messages.create(model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER], messages=ASK_WEATHER)
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    sent = engine.app.state.requests[-1]
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]

    result = [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees and sunny"}]
    second = client.messages.create(
        model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER],
        messages=[*ASK_WEATHER, {"role": "assistant", "content": first.content}, {"role": "user", "content": result}],
    )  # fmt: skip
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text" and second.content[0].text == "The tool said: 18 degrees and sunny"
    received = engine.app.state.requests[-1]["messages"]
    assert received[-2]["role"] == "assistant"
    assert received[-2]["tool_calls"][0]["id"] == call.id
    assert received[-2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert received[-1] == {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"}


def test_a_streamed_tool_call_arrives_as_input_json_deltas(
    client: anthropic.Anthropic, engine: BackgroundServer
) -> None:
    arguments = {"city": "Paris", "unit": "celsius", "days": 3}
    engine.app.state.tool_arguments = arguments
    try:
        with client.messages.stream(model=TOOLS_MODEL, max_tokens=64, tools=[WEATHER], messages=ASK_WEATHER) as s:
            events = list(s)
            final = s.get_final_message()
    finally:
        engine.app.state.tool_arguments = {"city": "Paris"}
    pieces = [e.delta.partial_json for e in events if e.type == "content_block_delta"
              and e.delta.type == "input_json_delta"]  # fmt: skip
    assert len(pieces) > 3  # the engine's fragments, passed on as they came
    starts = [e.content_block for e in events if e.type == "content_block_start"]
    assert [b.type for b in starts] == ["tool_use"] and starts[0].name == "get_weather"
    assert final.stop_reason == "tool_use"
    [block] = final.content
    assert block.type == "tool_use" and block.input == arguments and block.id == starts[0].id
    assert final.usage.output_tokens > 0 and final.usage.input_tokens > 0


def test_a_stream_broken_by_the_engine_ends_with_an_error_event(
    client: anthropic.Anthropic, engine: BackgroundServer
) -> None:
    engine.app.state.fail_mode, engine.app.state.fail_times = "break_stream", 1
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        client.messages.stream(model=TOOLS_MODEL, max_tokens=64, messages=ASK_WEATHER) as stream,
    ):
        list(stream)
    assert raised.value.body["type"] == "error"
    assert raised.value.body["error"]["type"] in ("api_error", "overloaded_error", "timeout_error")
