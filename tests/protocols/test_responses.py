"""The Responses API translation, checked against the official openai SDK's own parsing (no server)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx
import openai
import pytest

from inferhub.errors import InvalidRequest
from inferhub.protocols import responses
from inferhub.protocols.responses import ResponsesStream, from_chat, input_items, sse, to_chat

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}


def chat_result(message: dict[str, Any], finish_reason: str = "stop", **usage: int) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-name",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, **usage},
    }


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict | None = None) -> dict:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    out: dict[str, Any] = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": choices,
    }
    if usage is not None:
        out["usage"] = usage
    return out


USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def run_stream(request: dict[str, Any], chunks: Iterable[dict[str, Any]]) -> tuple[list[dict], ResponsesStream]:
    stream = ResponsesStream(request, "resp_test", 1700000000)
    events = stream.start()
    for c in chunks:
        events += stream.feed(c)
    events += stream.finish()
    return events, stream


def sdk_client(handler: Callable[[httpx.Request], httpx.Response]) -> openai.OpenAI:
    transport = httpx.MockTransport(handler)
    return openai.OpenAI(
        base_url="http://test/v1", api_key="x", max_retries=0, http_client=httpx.Client(transport=transport)
    )


def answering(body_of: Callable[[dict[str, Any]], dict[str, Any]]) -> openai.OpenAI:
    """An SDK whose server answers a Responses request with from_chat of ``body_of(chat request)``."""

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        chat = to_chat(body)
        return httpx.Response(200, json=from_chat(body_of(chat), body, "resp_abc", 1700000000))

    return sdk_client(handler)


def streaming(chunks: list[dict[str, Any]]) -> openai.OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert to_chat(body)["stream_options"] == {"include_usage": True}
        events, _ = run_stream(body, chunks)
        return httpx.Response(
            200, content=b"".join(sse(e) for e in events), headers={"content-type": "text/event-stream"}
        )

    return sdk_client(handler)


# -- request translation ------------------------------------------------------------------------


def test_string_input_and_instructions_become_system_then_user() -> None:
    chat = to_chat({"model": "m", "input": "Hi", "instructions": "Be brief", "max_output_tokens": 50,
                    "temperature": 0.2, "top_p": 0.9, "user": "u1", "metadata": {"k": "v"}})  # fmt: skip
    assert chat == {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"}],
        "max_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "user": "u1",
    }


def test_function_call_round_trip_becomes_assistant_tool_calls_and_tool_message() -> None:
    chat = to_chat({
        "model": "m",
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Weather in Paris and Rome?"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "content": [{"type": "reasoning_text", "text": "hm"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": '{"city":"Paris"}'},
            {"type": "function_call", "call_id": "call_2", "name": "get_weather", "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "rain"}]},
        ],
    })  # fmt: skip
    assert chat["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'}},
        ]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_2", "content": "rain"},
    ]  # fmt: skip
    assert chat["tools"] == [{"type": "function", "function": {k: v for k, v in WEATHER_TOOL.items() if k != "type"}}]
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert chat["parallel_tool_calls"] is False


def test_an_assistant_message_followed_by_its_calls_is_one_chat_message() -> None:
    chat = to_chat({"model": "m", "input": [
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Let me check."}]},
        {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
    ]})  # fmt: skip
    assert chat["messages"] == [
        {"role": "assistant", "content": "Let me check.",
         "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}
    ]  # fmt: skip


def test_text_format_json_schema_becomes_response_format() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    chat = to_chat(
        {
            "model": "m",
            "input": "x",
            "text": {"format": {"type": "json_schema", "name": "thing", "schema": schema, "strict": True}},
        }
    )
    assert chat["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "thing", "schema": schema, "strict": True},
    }
    assert to_chat({"model": "m", "input": "x", "text": {"format": {"type": "json_object"}}})["response_format"] == {
        "type": "json_object"
    }
    assert "response_format" not in to_chat({"model": "m", "input": "x", "text": {"format": {"type": "text"}}})


def test_images_become_image_url_parts() -> None:
    data_url = "data:image/png;base64,iVBORw0KGgo="
    chat = to_chat({"model": "m", "input": [{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": data_url, "detail": "low"},
        {"type": "input_image", "image_url": "https://example.com/cat.jpg"},
    ]}]})  # fmt: skip
    assert chat["messages"][0]["content"] == [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": data_url, "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]


def test_reasoning_effort_stream_and_developer_role() -> None:
    chat = to_chat(
        {
            "model": "m",
            "stream": True,
            "reasoning": {"effort": "low"},
            "input": [{"role": "developer", "content": "rules"}, {"role": "user", "content": "q"}],
        }
    )
    assert chat["reasoning_effort"] == "low"
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    assert chat["messages"][0] == {"role": "developer", "content": "rules"}


def test_history_of_a_previous_response_comes_before_the_new_input() -> None:
    first = {"model": "m", "input": "My name is Ada.", "instructions": "old instructions"}
    answer = from_chat(chat_result({"content": "Hello Ada."}), first, "resp_1", 1)
    history = input_items(first) + responses.output_items(answer)
    chat = to_chat({"model": "m", "input": "What is my name?", "instructions": "Be brief",
                    "previous_response_id": "resp_1"}, history)  # fmt: skip
    assert chat["messages"] == [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def test_input_items_have_ids_and_the_item_shape() -> None:
    items = input_items({"model": "m", "input": [
        {"role": "user", "content": "hi"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]})  # fmt: skip
    assert [i["id"].split("_")[0] for i in items] == ["msg", "fc", "fco"]
    assert len({i["id"] for i in items}) == 3
    assert items[0]["content"] == [{"type": "input_text", "text": "hi"}]
    assert items[2]["output"] == "ok" and items[2]["call_id"] == "c1"
    assert input_items({"model": "m", "input": "x"})[0]["role"] == "user"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"input": "x"}, "model", "required"),
        ({"model": "m"}, "input", "required"),
        ({"model": "m", "input": 5}, "input", "string or an array"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role", "robot"),
        ({"model": "m", "input": [{"role": "user"}]}, "input[0].content", "required"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image"}]}]},
         "input[0].content[0].image_url", "required"),
        ({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x"}]}]},
         "input[0].content[0].image_url", "data URL"),
        ({"model": "m", "input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
         "input[0].call_id", "required"),
        ({"model": "m", "input": [{"type": "function_call_output", "call_id": "c"}]}, "input[0].output", "required"),
        ({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type", "item_reference"),
        ({"model": "m", "input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type", "not supported"),
        ({"model": "m", "input": "x", "tools": [{"type": "custom", "name": "x"}]}, "tools[0].type", "'custom' tools"),
        ({"model": "m", "input": "x", "tools": [{"type": {"a": 1}}]}, "tools[0].type", "tools"),  # unhashable, a 500
        ({"model": "m", "input": "x", "tools": [{"type": ["web_search"]}]}, "tools[0].type", "tools"),
        ({"model": "m", "input": "x", "tools": [{"type": "local_shell"}]},
         "tools[0].type", "local_shell"),
        ({"model": "m", "input": "x", "tools": [{"type": "function"}]}, "tools[0].name", "required"),
        ({"model": "m", "input": "x", "tools": [{"type": "function", "name": "get weather"}]}, "tools[0].name", "64"),
        ({"model": "m", "input": [], "instructions": "only this"}, "input", "at least one"),
        ({"model": "m", "input": "x", "tool_choice": "sometimes"}, "tool_choice", "sometimes"),
        ({"model": "m", "input": "x", "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice.name", "nope"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "json_schema", "schema": {}}}},
         "text.format.name", "required"),
        ({"model": "m", "input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type", "yaml"),
        ({"model": "m", "input": "x", "temperature": 3}, "temperature", "between"),
        ({"model": "m", "input": "x", "max_output_tokens": 0}, "max_output_tokens", "at least 1"),
        ({"model": "m", "input": "x", "reasoning": {"effort": "extreme"}}, "reasoning.effort", "extreme"),
        ({"model": "m", "input": "x", "metadata": {"k": 1}}, "metadata.k", "string"),
        ({"model": "m", "input": "x", "stream": "yes"}, "stream", "boolean"),
        ({"model": "m", "input": "x", "conversation": "conv_1"}, "conversation", "previous_response_id"),
        ({"model": "m", "input": "x", "background": True, "store": False}, "background", "stored"),
    ],
)  # fmt: skip
def test_bad_requests_are_400s_naming_the_field(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat(body)
    error = caught.value.openai_body()["error"]
    assert caught.value.status_code == 400
    assert error["param"] == param
    assert error["message"].startswith(f"{param}: ") and words in error["message"]


# -- chat answer → Response, parsed by the SDK ----------------------------------------------------


def test_sdk_parses_a_text_response_with_usage_and_echo() -> None:
    client = answering(
        lambda chat: chat_result({"content": "Hello there."},
                                 prompt_tokens_details={"cached_tokens": 4},  # type: ignore[arg-type]
                                 completion_tokens_details={"reasoning_tokens": 2})  # type: ignore[arg-type]
    )  # fmt: skip
    response = client.responses.create(model="served", input="Hi", instructions="Be kind", temperature=0.5,
                                       metadata={"team": "a"}, store=False)  # fmt: skip
    assert response.id == "resp_abc" and response.object == "response" and response.status == "completed"
    assert response.model == "served"
    assert response.output_text == "Hello there."
    assert response.output[0].type == "message" and response.output[0].id.startswith("msg_")
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens, response.usage.total_tokens) == (11, 7, 18)
    assert response.usage.input_tokens_details.cached_tokens == 4
    assert response.usage.output_tokens_details.reasoning_tokens == 2
    assert response.instructions == "Be kind" and response.temperature == 0.5
    assert response.metadata == {"team": "a"} and response.store is False and response.error is None


def test_sdk_parses_tool_calls_and_reasoning() -> None:
    message = {
        "content": None,
        "reasoning_content": "The user wants weather.",
        "tool_calls": [{"id": "call_9", "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}],
    }  # fmt: skip
    client = answering(lambda chat: chat_result(message, "tool_calls"))
    response = client.responses.create(model="m", input="Weather in Paris?", tools=[WEATHER_TOOL])  # type: ignore[list-item]
    kinds = [item.type for item in response.output]
    assert kinds == ["reasoning", "function_call"]
    reasoning, call = response.output
    assert (
        reasoning.type == "reasoning" and reasoning.content and reasoning.content[0].text == "The user wants weather."
    )
    assert call.type == "function_call"
    assert (call.call_id, call.name, call.arguments) == ("call_9", "get_weather", '{"city":"Paris"}')
    assert call.id and call.id.startswith("fc_")
    assert response.tools[0].type == "function" and response.tools[0].name == "get_weather"
    assert response.output_text == ""


def test_length_finish_is_an_incomplete_response() -> None:
    client = answering(lambda chat: chat_result({"content": "Once upon a"}, "length"))
    response = client.responses.create(model="m", input="Tell a story", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None and response.incomplete_details.reason == "max_output_tokens"
    assert response.max_output_tokens == 3 and response.output_text == "Once upon a"


# -- streams ------------------------------------------------------------------------------------


def text_chunks() -> list[dict[str, Any]]:
    return [chunk({"role": "assistant", "content": ""}), chunk({"content": "Hel"}), chunk({"content": "lo"}),
            chunk({}, "stop"), chunk(usage=USAGE)]  # fmt: skip


def test_text_stream_events_in_order_with_sequence_numbers() -> None:
    events, stream = run_stream({"model": "m", "input": "hi", "stream": True}, text_chunks())
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta", "response.output_text.done",
        "response.content_part.done", "response.output_item.done", "response.completed",
    ]  # fmt: skip
    assert events[0]["response"]["status"] == "in_progress" and events[0]["response"]["output"] == []
    assert events[6]["text"] == "Hello"
    final = stream.final_response()
    assert final == events[-1]["response"]
    assert final["status"] == "completed" and final["usage"]["total_tokens"] == 8
    assert final["output"][0]["content"][0]["text"] == "Hello"


def test_sse_names_the_event() -> None:
    raw = sse({"type": "response.created", "sequence_number": 0, "response": {}})
    assert raw.startswith(b"event: response.created\ndata: {") and raw.endswith(b"\n\n")


def test_sdk_stream_of_text() -> None:
    client = streaming(text_chunks())
    with client.responses.stream(model="m", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["Hel", "lo"]
    assert final.output_text == "Hello" and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens == 3


def test_sdk_create_with_stream_true_yields_typed_events() -> None:
    client = streaming(text_chunks())
    kinds = [event.type for event in client.responses.create(model="m", input="hi", stream=True)]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def openai_tool_chunks() -> list[dict[str, Any]]:
    """vLLM's form: the call's id and name first, then the arguments in pieces, by index."""
    return [
        chunk({"role": "assistant", "content": None}),
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                               "function": {"name": "get_weather", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": ' "Paris"}'}}]}),
        chunk({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'}}]}),
        chunk({}, "tool_calls"),
        chunk(usage=USAGE),
    ]  # fmt: skip


def test_streamed_argument_deltas_become_function_call_events() -> None:
    events, stream = run_stream({"model": "m", "input": "x", "tools": [WEATHER_TOOL]}, openai_tool_chunks())
    kinds = [e["type"] for e in events]
    assert kinds[2:] == [
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.output_item.added",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.function_call_arguments.done", "response.output_item.done",
        "response.completed",
    ]  # fmt: skip
    assert events[2]["item"]["arguments"] == "" and events[2]["item"]["call_id"] == "call_a"
    output = stream.final_response()["output"]
    assert [(o["call_id"], o["arguments"]) for o in output] == [
        ("call_a", '{"city": "Paris"}'),
        ("call_b", '{"city": "Rome"}'),
    ]


def test_sdk_stream_of_tool_call_deltas() -> None:
    client = streaming(openai_tool_chunks())
    with client.responses.stream(model="m", input="x", tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        snapshots = [e.snapshot for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    assert snapshots[:2] == ['{"city":', '{"city": "Paris"}']
    calls = [(o.name, o.call_id, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls == [("get_weather", "call_a", '{"city": "Paris"}'), ("get_weather", "call_b", '{"city": "Rome"}')]


def test_sdk_stream_of_a_whole_tool_call_in_one_chunk() -> None:
    """Ollama's form (as translate.py passes it on): the whole call, arguments and all, in one chunk."""
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "call_x", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}),
        chunk({}, "tool_calls"),
        chunk(usage=USAGE),
    ]  # fmt: skip
    client = streaming(chunks)
    with client.responses.stream(model="m", input="x", tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        final = stream.get_final_response()
    [call] = final.output
    assert call.type == "function_call" and call.arguments == '{"city": "Oslo"}' and call.call_id == "call_x"


def test_sdk_stream_of_reasoning_then_text() -> None:
    chunks = [chunk({"reasoning_content": "Think"}), chunk({"reasoning_content": "ing."}), chunk({"content": "Answer"}),
              chunk({}, "stop"), chunk(usage=USAGE)]  # fmt: skip
    client = streaming(chunks)
    with client.responses.stream(model="m", input="x") as stream:
        kinds = [e.type for e in stream]
        final = stream.get_final_response()
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert kinds.count("response.reasoning_text.delta") == 2
    reasoning, message = final.output
    assert reasoning.type == "reasoning" and reasoning.content and reasoning.content[0].text == "Thinking."
    assert message.type == "message" and final.output_text == "Answer"


def test_an_empty_stream_still_completes_with_one_message() -> None:
    client = streaming([chunk({}, "stop"), chunk(usage=USAGE)])
    with client.responses.stream(model="m", input="x") as stream:
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "" and len(final.output) == 1


def test_a_length_stop_ends_with_response_incomplete() -> None:
    events, stream = run_stream({"model": "m", "input": "x", "max_output_tokens": 2},
                                [chunk({"content": "Once"}), chunk({}, "length"), chunk(usage=USAGE)])  # fmt: skip
    assert events[-1]["type"] == "response.incomplete"
    final = stream.final_response()
    assert final["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["output"][0]["status"] == "incomplete"


def test_a_fault_mid_stream_is_response_failed_and_the_sdk_reports_it() -> None:
    stream = ResponsesStream({"model": "m", "input": "x"}, "resp_f", 1)
    events = stream.start() + stream.feed(chunk({"content": "partial"}))
    events += stream.fail("the backend went away", code="server_error")
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {"code": "server_error", "message": "the backend went away"}
    assert stream.final_response()["status"] == "failed"
    assert stream.finish() == [] and stream.fail("again") == []  # the stream ended once
    body = b"".join(sse(e) for e in events)

    client = sdk_client(
        lambda request: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
    )
    received = list(client.responses.create(model="m", input="x", stream=True))
    failed = received[-1]
    assert failed.type == "response.failed" and failed.response.error is not None
    assert failed.response.error.message == "the backend went away"


# -- strict validation against the SDK's models (the SDK itself parses leniently) ----------------


def test_every_response_and_event_validates_strictly_against_the_sdk_models() -> None:
    """The SDK builds its objects without validation; a client in another language would not forgive a
    missing or mistyped field, so every object is validated here against the SDK's pydantic models."""
    from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
    from pydantic import TypeAdapter

    request = {"model": "m", "input": "x", "tools": [WEATHER_TOOL], "text": {"format": {"type": "json_object"}},
               "reasoning": {"effort": "high"}, "metadata": {"a": "b"}}  # fmt: skip
    message = {
        "content": "ok",
        "reasoning_content": "r",
        "tool_calls": [{"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
    }
    Response.model_validate(from_chat(chat_result(message, "tool_calls"), request, "resp_1", 1700000000))
    Response.model_validate(from_chat(chat_result({"content": "o"}, "length"), request, "resp_2", 1700000000))
    events_adapter = TypeAdapter(ResponseStreamEvent)
    reasoning_chunks = [chunk({"reasoning_content": "hm"}), chunk({"content": "a"})]
    streams = [text_chunks(), openai_tool_chunks(), reasoning_chunks + openai_tool_chunks(), [chunk({}, "length")]]
    for chunks in streams:
        events, _ = run_stream(request, chunks)
        for event in events:
            events_adapter.validate_python(event)
    failing = ResponsesStream(request, "resp_f", 1)
    for event in failing.start() + failing.feed(chunk({"content": "a"})) + failing.fail("boom"):
        events_adapter.validate_python(event)
    items = TypeAdapter(ResponseItem)
    for item in input_items({"model": "m", "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
        {"role": "system", "content": "s"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "and more"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "ok"},
    ]}):  # fmt: skip
        items.validate_python(item)


def test_whole_calls_in_separate_chunks_each_counted_from_zero_are_separate_calls() -> None:
    """Two Ollama lines with one whole call each: translate.py numbers each chunk's calls from 0."""
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}]}),
        chunk({"tool_calls": [{"index": 0, "id": "call_2", "type": "function",
                               "function": {"name": "get_time", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"),
    ]  # fmt: skip
    client = streaming(chunks)
    with client.responses.stream(model="m", input="x") as stream:
        final = stream.get_final_response()
    calls = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
    assert calls == [("call_1", "get_weather", '{"city": "Oslo"}'), ("call_2", "get_time", "{}")]


def test_text_after_a_tool_call_closes_the_call_first() -> None:
    events, stream = run_stream({"model": "m", "input": "x"}, [
        chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{}"}}]}),
        chunk({"content": "done"}), chunk({}, "stop"),
    ])  # fmt: skip
    kinds = [e["type"] for e in events]
    assert kinds.index("response.function_call_arguments.done") < kinds.index("response.output_text.delta")
    assert [o["type"] for o in stream.final_response()["output"]] == ["function_call", "message"]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [0, 1]


def test_a_stream_of_only_reasoning_ends_like_from_chat_with_an_empty_message() -> None:
    _, stream = run_stream({"model": "m", "input": "x"}, [chunk({"reasoning_content": "hm"}), chunk({}, "stop")])
    answer = from_chat(chat_result({"content": "", "reasoning_content": "hm"}), {"model": "m", "input": "x"}, "r", 1)
    assert [o["type"] for o in stream.final_response()["output"]] == [o["type"] for o in answer["output"]]
    assert [o["type"] for o in answer["output"]] == ["reasoning", "message"]


def test_translated_bodies_pass_the_chat_routes_own_checks() -> None:
    """The pipeline checks a chat body as the chat route does: a translated request must never fail there."""
    from inferhub.api.validation import check_chat

    first = {"model": "m", "input": "Weather?", "tools": [WEATHER_TOOL]}
    answer = from_chat(chat_result({"content": "Checking.", "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
    ]}, "tool_calls"), first, "resp_1", 1)  # fmt: skip
    history = input_items(first) + responses.output_items(answer)
    bodies = [
        ({"model": "m", "input": "hi", "instructions": "x", "stream": True, "max_output_tokens": 5, "top_p": 0.5}, ()),
        ({"model": "m", "tools": [WEATHER_TOOL], "tool_choice": "required", "parallel_tool_calls": True,
          "input": [{"type": "function_call_output", "call_id": "call_1", "output": "sunny"}]}, history),
        ({"model": "m", "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "see"},
            {"type": "input_image", "image_url": "data:image/png;base64,AA=="}]}],
          "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
          "reasoning": {"effort": "low"}}, ()),
    ]  # fmt: skip
    for body, earlier in bodies:
        check_chat(to_chat(body, earlier))


def test_sdk_conversation_with_previous_response_id_and_input_items() -> None:
    """A toy store in the mock server, as the route will keep one: the second turn sees the first."""
    stored: dict[str, dict[str, Any]] = {}
    seen: list[list[dict[str, Any]]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "GET" and path.endswith("/input_items"):
            items = stored[path.split("/")[-2]]["input_items"]
            return httpx.Response(200, json={"object": "list", "data": items, "first_id": items[0]["id"],
                                             "last_id": items[-1]["id"], "has_more": False})  # fmt: skip
        body = json.loads(request.content)
        previous = stored.get(body.get("previous_response_id") or "")
        history = previous["input_items"] + responses.output_items(previous["response"]) if previous else []
        chat = to_chat(body, history)
        seen.append(chat["messages"])
        response_id = responses.new_id("resp")
        answer = from_chat(chat_result({"content": f"answer {len(seen)}"}), body, response_id, 1700000000)
        stored[response_id] = {"input_items": input_items(body), "response": answer}
        return httpx.Response(200, json=answer)

    client = sdk_client(handler)
    first = client.responses.create(model="m", input="My name is Ada.")
    second = client.responses.create(model="m", input="What is my name?", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.output_text == "answer 2"
    assert seen[1] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "answer 1"},
        {"role": "user", "content": "What is my name?"},
    ]
    listed = client.responses.input_items.list(second.id)
    assert [(item.type, item.role) for item in listed.data] == [("message", "user")]  # type: ignore[union-attr]
    assert listed.data[0].content[0].text == "What is my name?"  # type: ignore[union-attr]


def test_hosted_tools_an_agent_sends_by_default_are_left_out_not_refused() -> None:
    # Codex 0.171.0 sends web_search and namespace tools unless told not to (docs/protocols/agents.md).
    function = {"type": "function", "name": "exec_command", "parameters": {"type": "object"}}
    body = {"model": "m", "input": "x", "tools": [{"type": "web_search"}, function, {"type": "namespace"}]}
    chat = to_chat(body)
    assert [tool["function"]["name"] for tool in chat["tools"]] == ["exec_command"]
    assert "tools" not in to_chat({**body, "tools": [{"type": "web_search"}]})
