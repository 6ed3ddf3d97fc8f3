"""The Messages API translation, pure; and its output read by the official anthropic SDK through a mock
transport (what the SDK parses and accumulates is what a client of the real route gets)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import orjson
import pytest

from inferhub.backends import translate
from inferhub.backends.base import StreamEvent
from inferhub.errors import APIError, InvalidRequest, UpstreamError
from inferhub.protocols import anthropic_messages as am

PNG = "iVBORw0KGgo="


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "qwen", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}], **extra}


def _chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta or {}, "finish_reason": finish, **extra}
    return {"id": "c1", "object": "chat.completion.chunk", "model": "qwen", "choices": [choice]}


USAGE_CHUNK = {
    "id": "c1",
    "object": "chat.completion.chunk",
    "choices": [],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7},
}


def _events(chunks: list[dict[str, Any]], **kwargs: Any) -> list[am.Event]:
    stream = am.MessagesStream("qwen", **kwargs)
    events = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    return events + stream.finish()


# -- request ----------------------------------------------------------------------------------------


def test_a_plain_request_becomes_a_chat_body_with_every_option_mapped():
    chat = am.to_chat(
        _body(
            system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind.", "cache_control": {}}],
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            stop_sequences=["END"],
            metadata={"user_id": "u-1"},
            stream=True,
            anthropic_beta_thing={"ignored": True},
        )
    )
    assert chat == {
        "model": "qwen",
        "max_tokens": 64,
        "messages": [{"role": "system", "content": "Be brief.\nBe kind."}, {"role": "user", "content": "hi"}],
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ["END"],
        "user": "u-1",
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert am.to_chat(_body(system="S"))["messages"][0] == {"role": "system", "content": "S"}
    assert "stream" not in am.to_chat(_body(stream=False))


def test_images_become_image_url_parts_base64_as_a_data_url():
    content = [
        {"type": "text", "text": "compare"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.jpg"}},
    ]
    chat = am.to_chat(_body(messages=[{"role": "user", "content": content}]))
    assert chat["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "compare"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
            ],
        }
    ]


TOOL = {
    "name": "get_weather",
    "description": "Weather of a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def test_a_tool_round_trip_becomes_tool_calls_then_tool_messages_before_the_rest_of_the_turn():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "thinking", "thinking": "two calls", "signature": "sig"},
                {"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_2",
                    "content": [{"type": "text", "text": "no data"}],
                    "is_error": True,
                },
                {"type": "text", "text": "And tomorrow?"},
            ],
        },
    ]
    chat = am.to_chat(_body(messages=messages, tools=[TOOL], tool_choice={"type": "auto"}))
    assert chat["tools"] == [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather of a city", "parameters": TOOL["input_schema"]},
        }
    ]
    assert chat["tool_choice"] == "auto"
    assert chat["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",  # the thinking block is dropped
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "Error: no data"},
        {"role": "user", "content": "And tomorrow?"},
    ]


def test_an_assistant_turn_of_tool_calls_only_has_null_content_and_a_result_image_follows_the_results():
    messages = [
        {"role": "user", "content": "shoot"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "screenshot", "input": {}}]},
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [
                        {"type": "text", "text": "taken"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": PNG}},
                    ],
                }
            ],
        },
    ]
    chat = am.to_chat(_body(messages=messages))
    assert chat["messages"][1]["content"] is None
    assert chat["messages"][1]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert chat["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "taken"},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PNG}"}}]},
    ]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        ({"type": "tool", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}, None),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
    ],
)
def test_tool_choice_maps_onto_openai(choice, expected, parallel):
    chat = am.to_chat(_body(tools=[TOOL], tool_choice=choice))
    assert chat["tool_choice"] == expected
    assert chat.get("parallel_tool_calls") is parallel


def test_a_last_assistant_turn_prefills_and_an_empty_one_is_left_out():
    prefill = [{"role": "user", "content": "JSON please"}, {"role": "assistant", "content": "{"}]
    assert am.to_chat(_body(messages=prefill))["messages"][-1] == {"role": "assistant", "content": "{"}
    empty = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": []}]
    assert am.to_chat(_body(messages=empty))["messages"] == [{"role": "user", "content": "hi"}]
    with pytest.raises(InvalidRequest, match=r"messages\[0\].content"):
        am.to_chat(_body(messages=[{"role": "assistant", "content": []}, {"role": "user", "content": "hi"}]))


def test_tool_choice_without_tools_is_not_sent_as_engines_refuse_it():
    assert "tool_choice" not in am.to_chat(_body(tool_choice={"type": "auto"}))


def test_thinking_and_effort_become_reasoning_effort_and_a_json_schema_format_reaches_the_engine():
    assert (
        am.to_chat(_body(max_tokens=4000, thinking={"type": "enabled", "budget_tokens": 2000}))["reasoning_effort"]
        == "low"
    )
    assert (
        am.to_chat(_body(max_tokens=32000, thinking={"type": "enabled", "budget_tokens": 20000}))["reasoning_effort"]
        == "high"
    )
    assert "reasoning_effort" not in am.to_chat(_body(thinking={"type": "disabled"}))
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    chat = am.to_chat(_body(output_config={"effort": "max", "format": {"type": "json_schema", "schema": schema}}))
    assert chat["reasoning_effort"] == "high"
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


def _with(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(_body(tools=[TOOL]))
    target: Any = body
    keys = path.split(".")
    for key in keys[:-1]:
        target = target[int(key)] if key.isdigit() else target[key]
    last = keys[-1]
    if value is KeyError:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return body


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_with("model", KeyError), "model"),
        (_with("model", ""), "model"),
        (_with("max_tokens", KeyError), "max_tokens"),
        (_with("max_tokens", 0), "max_tokens"),
        (_with("max_tokens", "10"), "max_tokens"),
        (_with("messages", []), "messages"),
        (_with("messages", "hi"), "messages"),
        (_with("messages.0.role", "tool"), "messages[0].role"),
        (_with("messages.0.content", KeyError), "messages[0].content"),
        (_with("messages.0.content", 5), "messages[0].content"),
        (_with("messages.0.content", [{"type": "video"}]), "messages[0].content[0].type"),
        (_with("messages.0.content", [{"type": "text", "text": 1}]), "messages[0].content[0].text"),
        (
            _with(
                "messages.0.content",
                [{"type": "image", "source": {"type": "base64", "media_type": "image/bmp", "data": "x"}}],
            ),
            "messages[0].content[0].source.media_type",
        ),
        (
            _with("messages.0.content", [{"type": "image", "source": {"type": "file", "file_id": "f"}}]),
            "messages[0].content[0].source.type",
        ),
        (_with("messages.0.content", [{"type": "tool_result"}]), "messages[0].content[0].tool_use_id"),
        (_with("messages.0.content", [{"type": "document", "source": {}}]), "messages[0].content[0].type"),
        (_with("system", [{"type": "image"}]), "system[0].type"),
        (_with("system", 3), "system"),
        (_with("tools.0.input_schema", KeyError), "tools[0].input_schema"),
        (_with("tools.0.name", "has space"), "tools[0].name"),
        (_with("tools.0", {"type": "web_search_20250305", "name": "web_search"}), "tools[0].type"),
        (_with("tool_choice", {"type": "tool", "name": "nope"}), "tool_choice.name"),
        (_with("tool_choice", {"type": "sometimes"}), "tool_choice.type"),
        (_with("tool_choice", {"type": {}}), "tool_choice.type"),  # not a string: a 400, not a TypeError
        (_with("tool_choice", {"type": ["any"]}), "tool_choice.type"),
        (_with("output_config", {"effort": ["high"]}), "output_config.effort"),
        (_with("temperature", 1.5), "temperature"),
        (_with("top_k", -1), "top_k"),
        (_with("stop_sequences", "END"), "stop_sequences"),
        (_with("metadata", {"user_id": 5}), "metadata.user_id"),
        (_with("stream", "yes"), "stream"),
        (_with("thinking", {"type": "enabled", "budget_tokens": 512}), "thinking.budget_tokens"),
        (_with("thinking", {"type": "enabled", "budget_tokens": 2048}), "thinking.budget_tokens"),  # >= max_tokens
        (_with("thinking", {"type": "enabled"}), "thinking.budget_tokens"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(body, param):
    with pytest.raises(InvalidRequest) as caught:
        am.to_chat(body)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert caught.value.message.startswith(f"{param}: ")


def test_count_tokens_needs_no_max_tokens_and_never_streams():
    chat = am.count_tokens_body(
        {
            "model": "qwen",
            "system": "S",
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [TOOL],
            "stream": True,
        }
    )
    assert "max_tokens" not in chat and "stream" not in chat
    assert chat["messages"][0] == {"role": "system", "content": "S"} and chat["tools"]
    with pytest.raises(InvalidRequest, match="messages"):
        am.count_tokens_body({"model": "qwen"})


# -- response ---------------------------------------------------------------------------------------


def _completion(message: dict[str, Any], finish: str = "stop", **choice: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "upstream-name",
        "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish, **choice}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29},
    }


def test_a_completion_with_reasoning_text_and_tool_calls_becomes_a_message():
    result = _completion(
        {
            "content": "Let me look.",
            "reasoning_content": "User wants weather.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{oops"}},
            ],
        },
        finish="tool_calls",
    )
    message = am.from_chat(result, "qwen")
    assert message["id"].startswith("msg_") and message["model"] == "qwen"
    assert message["content"] == [
        {"type": "thinking", "thinking": "User wants weather.", "signature": ""},
        {"type": "text", "text": "Let me look.", "citations": None},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},  # arguments not JSON
    ]
    assert message["stop_reason"] == "tool_use" and message["stop_sequence"] is None
    assert message["usage"]["input_tokens"] == 20 and message["usage"]["output_tokens"] == 9


@pytest.mark.parametrize(
    ("finish", "extra", "calls", "reason", "sequence"),
    [
        ("stop", {}, False, "end_turn", None),
        ("length", {}, False, "max_tokens", None),
        ("stop", {"stop_reason": "END"}, False, "stop_sequence", "END"),  # vLLM names the stop string
        ("stop", {"stop_reason": 128009}, False, "end_turn", None),  # vLLM: a stop token id
        ("stop", {}, True, "tool_use", None),  # Ollama ends tool calls with "stop"
        ("content_filter", {}, False, "refusal", None),
    ],
)
def test_finish_reasons_become_stop_reasons(finish, extra, calls, reason, sequence):
    message: dict[str, Any] = {"content": "x"}
    if calls:
        message["tool_calls"] = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    result = am.from_chat(_completion(message, finish, **extra), "qwen")
    assert (result["stop_reason"], result["stop_sequence"]) == (reason, sequence)


def test_an_empty_answer_is_one_empty_text_block():
    assert am.from_chat(_completion({"content": None}), "qwen")["content"] == [
        {"type": "text", "text": "", "citations": None}
    ]


# -- stream -----------------------------------------------------------------------------------------


def _names(events: list[am.Event]) -> list[str]:
    return [name if name not in ("content_block_delta",) else f"delta:{data['delta']['type']}" for name, data in events]


def test_a_text_stream_has_anthropics_event_order_and_the_final_usage():
    events = _events(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hel"}),
            _chunk({"content": "lo"}, "stop"),
            USAGE_CHUNK,
        ],
        input_tokens=11,
    )
    assert _names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        "delta:text_delta",
        "delta:text_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0][1]["message"]["usage"]["input_tokens"] == 11
    assert events[2][1] == {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    assert events[-2][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"input_tokens": 12, "output_tokens": 7},
    }


def test_openai_streamed_tool_call_arguments_become_input_json_deltas_one_block_per_call():
    chunks = [
        _chunk({"content": "Sure."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "get_time", "arguments": "{}"}}]}),
        _chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]
    events = _events(chunks)
    assert _names(events) == [
        "message_start",
        "ping",
        "content_block_start",
        "delta:text_delta",
        "content_block_stop",
        "content_block_start",
        "delta:input_json_delta",
        "delta:input_json_delta",
        "content_block_stop",
        "content_block_start",
        "delta:input_json_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[5][1]["content_block"] == {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}
    assert [e[1]["delta"]["partial_json"] for e in events[6:8]] == ['{"city": ', '"Paris"}']
    assert {e[1]["index"] for e in events[5:9]} == {1} and events[9][1]["index"] == 2
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_an_ollama_whole_tool_call_in_one_chunk_is_a_block_with_its_whole_input():
    line = {
        "model": "qwen",
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Rome"}}},
                {"function": {"name": "get_time", "arguments": {}}},
            ],
        },
        "done": False,
    }
    chunk = translate.ollama_chat_line_to_openai_chunk(line, chunk_id="c", created=0, model="qwen")
    done = translate.ollama_chat_line_to_openai_chunk(
        {"message": {}, "done": True, "done_reason": "stop"}, chunk_id="c", created=0, model="qwen"
    )
    events = _events([chunk, done])
    starts = [d["content_block"] for n, d in events if n == "content_block_start"]
    assert [(b["type"], b["name"]) for b in starts] == [("tool_use", "get_weather"), ("tool_use", "get_time")]
    deltas = [d for n, d in events if n == "content_block_delta"]
    assert [(d["index"], d["delta"]["partial_json"]) for d in deltas] == [(0, '{"city":"Rome"}'), (1, "{}")]
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"  # though Ollama said "stop"


def test_reasoning_deltas_become_a_thinking_block_before_the_text():
    events = _events(
        [_chunk({"reasoning_content": "Think"}), _chunk({"reasoning": "ing."}), _chunk({"content": "Answer"}, "stop")]
    )
    assert _names(events)[2:8] == [
        "content_block_start",
        "delta:thinking_delta",
        "delta:thinking_delta",
        "content_block_stop",
        "content_block_start",
        "delta:text_delta",
    ]
    assert events[2][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}


def test_a_tool_call_whose_name_comes_late_waits_for_it_and_a_finished_stream_adds_nothing():
    stream = am.MessagesStream("qwen")
    assert [
        n for n, _ in stream.feed(_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"arguments": '{"a"'}}]}))
    ] == ["message_start", "ping"]
    events = stream.feed(_chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": ":1}"}}]}))
    assert [d.get("delta", {}).get("partial_json") for _, d in events] == [None, '{"a":1}']  # held, then sent at once
    assert stream.finish()[-1][0] == "message_stop" and stream.finish() == []
    assert stream.feed(StreamEvent(_chunk({"content": "late"}))) == []


def test_stream_events_of_the_pipeline_are_fed_as_their_chunks():
    stream = am.MessagesStream("qwen", id="msg_fixed")
    events = stream.feed(StreamEvent(_chunk({"content": "hi"}, "length"), raw=b"ignored"))
    assert events[0][1]["message"]["id"] == "msg_fixed"
    assert events[-1][1]["delta"] == {"type": "text_delta", "text": "hi"}
    assert stream.finish()[-2][1]["delta"]["stop_reason"] == "max_tokens"


def test_sse_bytes_and_error_events():
    assert am.sse(("ping", {"type": "ping"})) == b'event: ping\ndata: {"type":"ping"}\n\n'
    name, data = am.stream_error(UpstreamError("no backend free", status_code=503))
    assert name == "error" and data == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "no backend free"},
    }
    assert am.stream_error(RuntimeError("secret detail"))[1]["error"] == {
        "type": "api_error",
        "message": "the gateway failed while streaming the answer",
    }


@pytest.mark.parametrize(
    ("status", "kind", "sent"),
    [
        (400, "invalid_request_error", 400),
        (401, "authentication_error", 401),
        (403, "permission_error", 403),
        (404, "not_found_error", 404),
        (413, "request_too_large", 413),
        (429, "rate_limit_error", 429),
        (500, "api_error", 500),
        (502, "api_error", 502),
        (503, "overloaded_error", 529),
        (504, "timeout_error", 504),
        (422, "invalid_request_error", 422),
    ],
)
def test_error_bodies_have_anthropics_types_and_statuses(status, kind, sent):
    assert am.error_body(status, "m") == {"type": "error", "error": {"type": kind, "message": "m"}}
    assert am.anthropic_status(status) == sent


# -- the official SDK reads what the translation writes --------------------------------------------

REPLY_TOOL = _completion(
    {
        "content": "Checking.",
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}
        ],
    },
    finish="tool_calls",
)


def _client(
    answer: Callable[[str, dict[str, Any]], httpx2.Response], seen: list[dict[str, Any]]
) -> anthropic.Anthropic:
    def handle(request: httpx2.Request) -> httpx2.Response:
        body = orjson.loads(request.content) if request.content else {}
        seen.append(
            {
                "path": request.url.path,
                "body": body,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "query": dict(request.url.params),
            }
        )
        try:
            return answer(request.url.path, body)
        except APIError as exc:
            status, error = am.error_response(exc)
            return httpx2.Response(status, json=error)

    transport = httpx2.MockTransport(handle)
    return anthropic.Anthropic(
        base_url="http://inferhub.test", api_key="ih-key", max_retries=0, http_client=httpx2.Client(transport=transport)
    )


def _sse_response(chunks: list[dict[str, Any]], input_tokens: int = 0) -> httpx2.Response:
    payload = b"".join(am.sse(e) for e in _events(chunks, input_tokens=input_tokens))
    return httpx2.Response(200, content=payload, headers={"content-type": "text/event-stream"})


def test_sdk_create_reads_a_translated_tool_use_answer_and_sends_the_tool_result_back():
    seen: list[dict[str, Any]] = []
    replies = [REPLY_TOOL, _completion({"content": "It is 18C in Paris."})]

    def answer(path: str, body: dict[str, Any]) -> httpx2.Response:
        chat = am.to_chat(body)
        seen[-1]["chat"] = chat
        return httpx2.Response(200, json=am.from_chat(replies.pop(0), body["model"]))

    client = _client(answer, seen)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = client.messages.create(model="qwen", max_tokens=100, messages=messages, tools=[TOOL])  # type: ignore[list-item]
    assert seen[0]["path"] == "/v1/messages" and seen[0]["headers"]["anthropic-version"]
    # This SDK (2.16) sends the key as "Authorization: Bearer"; older ones and curl users send x-api-key.
    assert "ih-key" in (seen[0]["headers"].get("x-api-key") or seen[0]["headers"]["authorization"])
    assert first.stop_reason == "tool_use" and first.usage.input_tokens == 20
    text, call = first.content
    assert text.type == "text" and text.text == "Checking."
    assert call.type == "tool_use" and call.input == {"city": "Paris"} and call.name == "get_weather"

    messages += [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C"}]},
    ]
    second = client.messages.create(model="qwen", max_tokens=100, messages=messages, tools=[TOOL])  # type: ignore[list-item]
    assert second.content[0].text == "It is 18C in Paris." and second.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert seen[1]["chat"]["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]


def test_sdk_stream_accumulates_thinking_text_and_streamed_tool_calls():
    chunks = [
        _chunk({"reasoning_content": "Need the weather."}),
        _chunk({"content": "Let me "}),
        _chunk({"content": "check."}),
        _chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": ""},
                    }
                ]
            }
        ),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Pa'}}]}),
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'ris"}'}}]}),
        _chunk({}, "tool_calls"),
        USAGE_CHUNK,
    ]
    seen: list[dict[str, Any]] = []

    def answer(path: str, body: dict[str, Any]) -> httpx2.Response:
        assert am.to_chat(body)["stream_options"] == {"include_usage": True}
        return _sse_response(chunks, input_tokens=12)

    client = _client(answer, seen)
    with client.messages.stream(
        model="qwen",
        max_tokens=4000,
        tools=[TOOL],  # type: ignore[list-item]
        thinking={"type": "enabled", "budget_tokens": 2000},
        messages=[{"role": "user", "content": "Weather?"}],
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Let me check."
    assert [b.type for b in final.content] == ["thinking", "text", "tool_use"]
    assert final.content[0].thinking == "Need the weather."  # type: ignore[union-attr]
    assert final.content[2].input == {"city": "Paris"} and final.content[2].id == "call_a"  # type: ignore[union-attr]
    assert final.stop_reason == "tool_use"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (12, 7)


def test_sdk_stream_accumulates_ollama_whole_tool_calls_and_a_stop_sequence():
    line = {
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Rome"}}}],
        },
        "done": False,
    }
    ollama_chunk = translate.ollama_chat_line_to_openai_chunk(line, chunk_id="c", created=0, model="qwen")
    client = _client(lambda path, body: _sse_response([ollama_chunk, _chunk({}, "stop")]), [])
    with client.messages.stream(model="qwen", max_tokens=50, messages=[{"role": "user", "content": "?"}]) as stream:
        final = stream.get_final_message()
    assert final.content[0].type == "tool_use" and final.content[0].input == {"city": "Rome"}
    assert final.stop_reason == "tool_use"

    stopped = [_chunk({"content": "1, 2, "}), _chunk({}, "stop", stop_reason="3")]
    client = _client(lambda path, body: _sse_response(stopped), [])
    with client.messages.stream(
        model="qwen", max_tokens=50, stop_sequences=["3"], messages=[{"role": "user", "content": "count"}]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence, final.content[0].text) == ("stop_sequence", "3", "1, 2, ")  # type: ignore[union-attr]


def test_sdk_raises_the_error_event_of_a_failed_stream_and_the_error_status_of_a_refused_request():
    def failing(path: str, body: dict[str, Any]) -> httpx2.Response:
        stream = am.MessagesStream("qwen")
        events = stream.start() + stream.feed(_chunk({"content": "par"})) + [stream_error_event]
        return httpx2.Response(
            200, content=b"".join(am.sse(e) for e in events), headers={"content-type": "text/event-stream"}
        )

    stream_error_event = am.stream_error(UpstreamError("the backend went away", status_code=502))
    client = _client(failing, [])
    with (
        pytest.raises(anthropic.APIStatusError, match="the backend went away"),
        client.messages.stream(model="qwen", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream,
    ):
        stream.get_final_message()

    def checked(path: str, body: dict[str, Any]) -> httpx2.Response:
        am.to_chat(body)
        return httpx2.Response(200, json=am.from_chat(_completion({"content": "x"}), "q"))

    client = _client(checked, [])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="qwen", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: must be at least 1, got 0"},
    }

    def overloaded(path: str, body: dict[str, Any]) -> httpx2.Response:
        raise UpstreamError("all backends busy", status_code=503)

    with pytest.raises(anthropic.OverloadedError):
        _client(overloaded, []).messages.create(
            model="qwen", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )


def test_sdk_count_tokens_and_models_list():
    seen: list[dict[str, Any]] = []
    names = [f"model-{i}" for i in range(5)]

    def answer(path: str, body: dict[str, Any]) -> httpx2.Response:
        if path == "/v1/messages/count_tokens":
            chat = am.count_tokens_body(body)
            return httpx2.Response(200, json=am.count_tokens_result(len(chat["messages"]) * 10))
        query = seen[-1]["query"]
        page = am.models_page(names, limit=int(query.get("limit", 20)), after_id=query.get("after_id"))
        return httpx2.Response(200, json=page)

    client = _client(answer, seen)
    count = client.messages.count_tokens(model="qwen", system="S", messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens == 20
    listed = [m.id for m in client.models.list(limit=2)]  # the SDK pages through has_more / last_id
    assert listed == names
    assert [s["query"].get("after_id") for s in seen[1:]] == [None, "model-1", "model-3"]
    first = client.models.list(limit=2).data[0]
    assert first.type == "model" and first.display_name == "model-0" and first.created_at.year == 1970


def test_models_page_before_id_pages_backwards():
    names = ["a", "b", "c", "d"]
    assert am.models_page(names, limit=2, before_id="d") == {
        "data": [{"type": "model", "id": n, "display_name": n, "created_at": am.EPOCH} for n in ("b", "c")],
        "has_more": True,
        "first_id": "b",
        "last_id": "c",
    }
    assert am.models_page(names)["has_more"] is False


def test_the_chat_bodies_pass_the_gateways_own_chat_checks():
    """What the translation writes is a chat request the pipeline accepts as it accepts a chat client's."""
    from inferhub.api import validation

    content = [
        {"type": "tool_result", "tool_use_id": "t1", "content": "ok"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "and?"},
    ]
    messages = [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "get_weather", "input": {}}]},
        {"role": "user", "content": content},
    ]
    body = _body(messages=messages, system="S", tools=[TOOL], tool_choice={"type": "tool", "name": "get_weather"},
                 stop_sequences=["x"], stream=True, thinking={"type": "enabled", "budget_tokens": 1024},
                 max_tokens=2048, temperature=1)  # fmt: skip
    validation.check_chat(am.to_chat(body))
    validation.check_chat(am.count_tokens_body(body) | {"max_tokens": 1})


def test_a_system_turn_inside_messages_stays_a_system_message_in_place() -> None:
    # Claude Code sends its reminders so (the mid-conversation-system beta): string or text blocks.
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": [{"type": "text", "text": "Agents: Explore, Plan"}]},
        {"role": "assistant", "content": "hello"},
        {"role": "system", "content": "Be brief."},
    ]
    chat = am.to_chat(_body(messages=messages))
    assert [(m["role"], m["content"]) for m in chat["messages"]] == [
        ("user", "hi"), ("system", "Agents: Explore, Plan"), ("assistant", "hello"), ("system", "Be brief."),
    ]  # fmt: skip
