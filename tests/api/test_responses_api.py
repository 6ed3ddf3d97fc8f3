"""The official openai SDK's Responses API (``client.responses``) against a running Inferhub.

One server for the module: the embedded SmolLM2 (``smollm2``) and a fake vLLM-style engine that calls tools
(``tool-model``, tests/fakes/tool_engine.py) which records what it received, so a test can check what the
translated chat request carried (the earlier exchange of a ``previous_response_id``, a tool message).
Two tenants' keys check ownership; the built-in job worker runs ``background: true`` responses.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from fakes import BackgroundServer, create_fake_tool_engine_app
from support import InferhubProcess

TOOL_MODEL = "tool-model"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


@pytest.fixture(scope="module")
def engine() -> Iterator[BackgroundServer]:
    server = BackgroundServer(create_fake_tool_engine_app(TOOL_MODEL)).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, engine: BackgroundServer) -> Iterator[InferhubProcess]:
    config = {"backends": [{"model_name": TOOL_MODEL, "backend_type": "vllm", "endpoint_url": engine.url}]}
    with InferhubProcess(tmp_path_factory.mktemp("responses"), config=config) as process:
        yield process


def _tenant_key(hub: InferhubProcess, tenant: str) -> tuple[openai.OpenAI, int]:
    hub.cli("tenants", "create", tenant)
    created = hub.cli("keys", "create", f"{tenant}-key", "--scope", "inference", "--tenant", tenant)
    secret, key_id = created.stdout.strip(), int(re.search(r"created key (\d+)", created.stderr).group(1))
    wait_for(lambda: httpx.get(f"{hub.url}/v1/models", headers={"Authorization": f"Bearer {secret}"}).status_code
             == 200)  # fmt: skip
    return openai.OpenAI(base_url=f"{hub.url}/v1", api_key=secret, max_retries=0, timeout=120), key_id


@pytest.fixture(scope="module")
def tenant_a(hub: InferhubProcess) -> tuple[openai.OpenAI, int]:
    return _tenant_key(hub, "resp-a")


@pytest.fixture(scope="module")
def client(tenant_a: tuple[openai.OpenAI, int]) -> openai.OpenAI:
    return tenant_a[0]


@pytest.fixture(scope="module")
def other(hub: InferhubProcess) -> openai.OpenAI:
    return _tenant_key(hub, "resp-b")[0]


@pytest.fixture
def received(engine: BackgroundServer) -> list[dict[str, Any]]:
    """The chat bodies the fake engine receives from now on."""
    requests = engine.app.state.requests
    requests.clear()
    return requests


def _chat_bodies(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [body for body in received if isinstance(body, dict) and "messages" in body]


# -- create and stream with the embedded model --------------------------------------------------


def test_create_answers_and_bills_the_usage_it_reports(hub, tenant_a) -> None:
    client, key_id = tenant_a
    response = client.responses.create(model="smollm2", input="Name a colour.", max_output_tokens=12,
                                       temperature=0)  # fmt: skip
    assert response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.id.startswith("resp_") and response.model == "smollm2"
    assert response.usage.input_tokens > 0 and 0 < response.usage.output_tokens <= 12

    def billed() -> dict[str, Any] | None:
        rows = httpx.get(f"{hub.url}/api/request-log", params={"key_id": key_id, "limit": 1000},
                         headers=hub.headers).json()["data"]  # fmt: skip
        return next((r for r in rows if r["endpoint"] == "/v1/responses" and r["status"] == 200), None)

    row = wait_for(billed)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (response.usage.input_tokens,
                                                                response.usage.output_tokens)  # fmt: skip
    assert row["tenant_id"] is not None


def test_developer_message_reaches_the_embedded_model(client: openai.OpenAI) -> None:
    # Codex CLI's instructions come as a developer message; llama-cpp-python refuses that role (it is a system one).
    turns = [{"role": "developer", "content": "Answer briefly."}, {"role": "user", "content": "Name a colour."}]
    response = client.responses.create(model="smollm2", input=turns, max_output_tokens=8, temperature=0)
    assert response.status in ("completed", "incomplete") and response.output_text.strip()


def test_stream_events_and_final_response(client: openai.OpenAI) -> None:
    # Room to finish: the SDK's get_final_response wants response.completed (response.incomplete at the limit).
    with client.responses.stream(model="smollm2", input="Say hello in one word.", max_output_tokens=200,
                                 temperature=0) as stream:  # fmt: skip
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    deltas = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert deltas.strip() and final.output_text == deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.usage.output_tokens > 0
    stored = client.responses.retrieve(final.id)  # store defaults to true, for a stream too
    assert stored.output_text == deltas and stored.status == final.status


def test_text_format_json_schema_gives_json_that_matches(client: openai.OpenAI, received) -> None:
    schema = {"type": "object", "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
              "required": ["colour"], "additionalProperties": False}  # fmt: skip
    text = {"format": {"type": "json_schema", "name": "colour", "schema": schema, "strict": True}}
    response = client.responses.create(model="smollm2", input="Pick a colour.", max_output_tokens=30,
                                       temperature=0, text=text)  # fmt: skip
    answer = json.loads(response.output_text)  # llama.cpp constrained the output by the schema's grammar
    assert set(answer) == {"colour"} and answer["colour"] in ("red", "green", "blue")
    assert response.text.format.type == "json_schema"
    # What an engine receives: the schema as response_format.
    client.responses.create(model=TOOL_MODEL, input="Pick a colour.", text=text)
    (body,) = _chat_bodies(received)
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "colour", "schema": schema, "strict": True}}  # fmt: skip


# -- stored responses ---------------------------------------------------------------------------


def test_previous_response_id_replays_the_first_exchange(client: openai.OpenAI, received) -> None:
    first = client.responses.create(model=TOOL_MODEL, input="remember 42", instructions="Be brief.")
    assert first.output_text == "echo: remember 42"
    second = client.responses.create(model=TOOL_MODEL, input="which number?", previous_response_id=first.id)
    assert second.previous_response_id == first.id
    messages = _chat_bodies(received)[-1]["messages"]
    assert messages == [  # as at OpenAI, the first request's instructions are not carried over
        {"role": "user", "content": "remember 42"},
        {"role": "assistant", "content": "echo: remember 42"},
        {"role": "user", "content": "which number?"},
    ]
    items = client.responses.input_items.list(second.id)
    assert [(i.type, i.role, i.content[0].text) for i in items.data] == [("message", "user", "which number?")]


def test_an_unknown_previous_response_id_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=TOOL_MODEL, input="hi", previous_response_id="resp_missing")
    assert caught.value.body["param"] == "previous_response_id"


def test_get_input_items_and_delete(client: openai.OpenAI) -> None:
    created = client.responses.create(
        model=TOOL_MODEL,
        input=[{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"},
               {"role": "user", "content": "three"}],
    )  # fmt: skip
    got = client.responses.retrieve(created.id)
    assert got.id == created.id and got.output_text == created.output_text == "echo: three"
    newest = client.responses.input_items.list(created.id, limit=2)
    assert [i.content[0].text for i in newest.data] == ["three", "two"] and newest.has_more
    oldest = client.responses.input_items.list(created.id, order="asc")
    assert [i.content[0].text for i in oldest.data] == ["one", "two", "three"]
    after = client.responses.input_items.list(created.id, order="asc", after=oldest.data[0].id)
    assert [i.content[0].text for i in after.data] == ["two", "three"]
    deleted = client.responses.with_raw_response.delete(created.id).http_response.json()
    assert deleted == {"id": created.id, "object": "response.deleted", "deleted": True}
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(created.id)


def test_another_tenant_gets_404_for_every_operation(client: openai.OpenAI, other: openai.OpenAI) -> None:
    created = client.responses.create(model=TOOL_MODEL, input="secret")
    attempts = (
        lambda: other.responses.retrieve(created.id),
        lambda: other.responses.input_items.list(created.id),
        lambda: other.responses.delete(created.id),
        lambda: other.responses.create(model=TOOL_MODEL, input="x", previous_response_id=created.id),
    )
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as caught:
            attempt()
        assert caught.value.body["type"] == "invalid_request_error" and caught.value.status_code == 404
    assert client.responses.retrieve(created.id).output_text == "echo: secret"  # still there


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    response = client.responses.create(model=TOOL_MODEL, input="forget me", store=False)
    assert response.output_text == "echo: forget me" and response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)


# -- function tools -----------------------------------------------------------------------------


def test_function_call_then_its_output_reaches_the_engine_as_a_tool_message(client, received) -> None:
    asked = client.responses.create(model=TOOL_MODEL, input="Weather in Paris?", tools=[WEATHER])
    (call,) = asked.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert json.loads(call.arguments) == {"city": "Paris"}
    assert _chat_bodies(received)[0]["tools"] == [{"type": "function", "function": {
        k: WEATHER[k] for k in ("name", "description", "parameters")}}]  # fmt: skip
    answered = client.responses.create(
        model=TOOL_MODEL, previous_response_id=asked.id, tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
    )  # fmt: skip
    assert answered.output_text == "The tool said: sunny, 21 C"
    messages = _chat_bodies(received)[-1]["messages"]
    assert messages[-2]["role"] == "assistant"
    assert messages[-2]["tool_calls"][0]["id"] == call.call_id
    assert messages[-2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": call.arguments}
    assert messages[-1] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}


def test_a_streamed_function_call(client: openai.OpenAI) -> None:
    with client.responses.stream(model=TOOL_MODEL, input="Weather in Paris?", tools=[WEATHER]) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    assert kinds[-1] == "response.completed"
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert json.loads(done.arguments) == {"city": "Paris"}
    (call,) = final.output
    assert call.type == "function_call" and call.name == "get_weather" and call.arguments == done.arguments
    assert client.responses.retrieve(final.id).output[0].call_id == call.call_id


# -- background ---------------------------------------------------------------------------------


def test_background_response_is_queued_then_completed(client: openai.OpenAI) -> None:
    queued = client.responses.create(model=TOOL_MODEL, input="later please", background=True)
    assert queued.status in ("queued", "in_progress") and queued.background is True
    done = wait_for(lambda: (r := client.responses.retrieve(queued.id)).status not in ("queued", "in_progress") and r)
    assert done.status == "completed" and done.output_text == "echo: later please"
    assert done.usage.output_tokens > 0


def test_cancel_a_background_response(client: openai.OpenAI, engine: BackgroundServer) -> None:
    engine.app.state.delay = 4.0
    try:
        queued = client.responses.create(model=TOOL_MODEL, input="slow one", background=True)
        cancelled = client.responses.cancel(queued.id)
        assert cancelled.status == "cancelled"
        time.sleep(5.0)  # the engine would have answered by now: its late result is dropped
        assert client.responses.retrieve(queued.id).status == "cancelled"
        assert client.responses.cancel(queued.id).status == "cancelled"  # twice is harmless
    finally:
        engine.app.state.delay = 0.0


def test_cancelling_a_foreground_response_is_a_400(client: openai.OpenAI) -> None:
    created = client.responses.create(model=TOOL_MODEL, input="quick")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(created.id)


# -- bad input ----------------------------------------------------------------------------------


def test_a_client_run_tool_of_another_type_is_a_400_naming_the_field(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=TOOL_MODEL, input="run", tools=[{"type": "custom", "name": "shell"}])
    assert caught.value.body["param"] == "tools[0].type"
    assert "'custom'" in caught.value.body["message"]


def test_hosted_tools_an_agent_sends_are_left_out_of_what_the_engine_sees(client: openai.OpenAI, received) -> None:
    # Codex sends web_search and namespace tools by default (docs/protocols/agents.md).
    tools = [{"type": "web_search"}, WEATHER, {"type": "namespace", "name": "agents"}]
    asked = client.responses.create(model=TOOL_MODEL, input="Weather in Paris?", tools=tools)  # type: ignore[arg-type]
    assert asked.output[0].type == "function_call"
    assert [tool["function"]["name"] for tool in _chat_bodies(received)[0]["tools"]] == ["get_weather"]


def test_background_with_store_false_is_a_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=TOOL_MODEL, input="x", background=True, store=False)
    assert caught.value.body["param"] == "background"


def test_an_unknown_model_is_a_404_naming_it(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model="no-such-model", input="x")
    assert caught.value.body["param"] == "model" and "no-such-model" in caught.value.body["message"]


def test_a_stream_cut_by_the_engine_ends_with_response_failed(client: openai.OpenAI, engine) -> None:
    engine.app.state.fail_mode, engine.app.state.fail_times = "break_stream", 1
    try:
        with client.responses.stream(model=TOOL_MODEL, input="one two three four five") as stream:
            events = list(stream)
    finally:
        engine.app.state.fail_mode = engine.app.state.fail_times = None
    assert events[0].type == "response.created" and events[-1].type == "response.failed"
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.message
    assert client.responses.retrieve(failed.id).status == "failed"  # stored as it ended


def test_a_background_response_survives_a_restart(tmp_path, engine: BackgroundServer) -> None:
    """The server stops while the job runs: the job goes back to the queue and ends after the restart."""
    config = {"backends": [{"model_name": TOOL_MODEL, "backend_type": "vllm", "endpoint_url": engine.url}]}
    hub = InferhubProcess(tmp_path / "restart", local_models=False, config=config)
    engine.app.state.delay = 3.0
    try:
        with hub:
            client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=hub.api_key, max_retries=0, timeout=60)
            queued = client.responses.create(model=TOOL_MODEL, input="survive this", background=True)
            wait_for(lambda: client.responses.retrieve(queued.id).status == "in_progress")
        engine.app.state.delay = 0.0
        with hub:
            client = openai.OpenAI(base_url=f"{hub.url}/v1", api_key=hub.api_key, max_retries=0, timeout=60)
            done = wait_for(lambda: (r := client.responses.retrieve(queued.id)).status == "completed" and r)
            assert done.output_text == "echo: survive this"
    finally:
        engine.app.state.delay = 0.0
