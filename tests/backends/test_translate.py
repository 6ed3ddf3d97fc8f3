"""OpenAI <-> Ollama protocol translation (pure functions, no servers)."""

from __future__ import annotations

import re

import orjson
import pytest

from inferhub.backends import translate

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")


def _chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


# -- OpenAI request -> Ollama request ----------------------------------------------------------


def test_chat_request_basic_shape_uses_given_upstream_model_and_stream_flag():
    out = translate.openai_chat_to_ollama(_chat(), "upstream:7b", stream=True)
    assert out["model"] == "upstream:7b"
    assert out["stream"] is True
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert out["options"] == {}
    assert "format" not in out
    assert "think" not in out
    assert translate.openai_chat_to_ollama(_chat(), "x", stream=False)["stream"] is False


def test_max_tokens_becomes_num_predict():
    out = translate.openai_chat_to_ollama(_chat(max_tokens=42), "m", stream=False)
    assert out["options"]["num_predict"] == 42
    assert "max_tokens" not in out["options"]


def test_max_completion_tokens_wins_over_max_tokens():
    out = translate.openai_chat_to_ollama(_chat(max_tokens=42, max_completion_tokens=7), "m", stream=False)
    assert out["options"]["num_predict"] == 7


def test_null_max_completion_tokens_falls_back_to_max_tokens():
    out = translate.openai_chat_to_ollama(_chat(max_tokens=42, max_completion_tokens=None), "m", stream=False)
    assert out["options"].get("num_predict") == 42


def test_sampling_options_are_copied_and_none_values_dropped():
    body = _chat(temperature=0.3, top_p=0.9, top_k=40, seed=123, stop=["END", "STOP"], presence_penalty=None)
    options = translate.openai_chat_to_ollama(body, "m", stream=False)["options"]
    assert options == {"temperature": 0.3, "top_p": 0.9, "top_k": 40, "seed": 123, "stop": ["END", "STOP"]}


def test_temperature_zero_is_kept():
    options = translate.openai_chat_to_ollama(_chat(temperature=0), "m", stream=False)["options"]
    assert options == {"temperature": 0}


def test_stop_string_becomes_list():
    options = translate.openai_chat_to_ollama(_chat(stop="\n\n"), "m", stream=False)["options"]
    assert options["stop"] == ["\n\n"]


def test_response_format_json_object_becomes_format_json():
    out = translate.openai_chat_to_ollama(_chat(response_format={"type": "json_object"}), "m", stream=False)
    assert out["format"] == "json"


def test_response_format_json_schema_becomes_schema_format():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = _chat(response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert translate.openai_chat_to_ollama(body, "m", stream=False)["format"] == schema


def test_response_format_text_sets_no_format():
    out = translate.openai_chat_to_ollama(_chat(response_format={"type": "text"}), "m", stream=False)
    assert "format" not in out


@pytest.mark.parametrize(("effort", "think"), [("none", False), ("low", True), ("high", True)])
def test_reasoning_effort_sets_think(effort, think):
    assert translate.openai_chat_to_ollama(_chat(reasoning_effort=effort), "m", stream=False)["think"] is think


def test_tools_are_forwarded():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert translate.openai_chat_to_ollama(_chat(tools=tools), "m", stream=False)["tools"] == tools


def test_assistant_reasoning_content_becomes_thinking():
    body = _chat()
    body["messages"].append({"role": "assistant", "content": "4", "reasoning_content": "2+2 is 4"})
    message = translate.openai_chat_to_ollama(body, "m", stream=False)["messages"][1]
    assert message == {"role": "assistant", "content": "4", "thinking": "2+2 is 4"}


def test_assistant_tool_calls_arguments_string_becomes_object():
    body = _chat()
    body["messages"].append(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris", "days": 2}'},
                }
            ],
        }
    )
    body["messages"].append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
    messages = translate.openai_chat_to_ollama(body, "m", stream=False)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris", "days": 2}}}],
    }
    assert messages[2] == {"role": "tool", "content": "sunny"}


def test_tool_call_with_unparseable_arguments_becomes_empty_object():
    body = _chat()
    body["messages"].append(
        {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": "{oops"}}]}
    )
    message = translate.openai_chat_to_ollama(body, "m", stream=False)["messages"][1]
    assert message["tool_calls"] == [{"function": {"name": "f", "arguments": {}}}]


def test_content_parts_text_joined_and_data_url_images_extracted():
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "in this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,BBBB"}},
                ],
            }
        ],
    }
    message = translate.openai_chat_to_ollama(body, "m", stream=False)["messages"][0]
    assert message == {"role": "user", "content": "what is\nin this?", "images": ["AAAA", "BBBB"]}


def test_content_parts_without_images_have_no_images_key():
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "only text"}]}]}
    message = translate.openai_chat_to_ollama(body, "m", stream=False)["messages"][0]
    assert message == {"role": "user", "content": "only text"}


def test_completion_request_is_raw_generate():
    body = {"model": "m", "prompt": "Once upon", "max_tokens": 5, "temperature": 0.1}
    out = translate.openai_completion_to_ollama(body, "up", stream=True)
    assert out == {
        "model": "up",
        "prompt": "Once upon",
        "raw": True,
        "stream": True,
        "options": {"temperature": 0.1, "num_predict": 5},
    }


# -- Ollama response -> OpenAI response --------------------------------------------------------


def test_ollama_chat_response_to_openai():
    data = {
        "model": "up",
        "message": {"role": "assistant", "content": "Hello", "thinking": "greet"},
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": 11,
        "eval_count": 3,
    }
    out = translate.ollama_chat_to_openai_response(data, "public-name")
    assert out["object"] == "chat.completion"
    assert out["model"] == "public-name"
    assert out["id"].startswith("chatcmpl-")
    assert isinstance(out["created"], int)
    choice = out["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "Hello", "reasoning_content": "greet"}
    assert choice["finish_reason"] == "stop"
    assert out["usage"] == {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}


def test_ollama_done_reason_length_becomes_finish_reason_length():
    data = {"message": {"role": "assistant", "content": "x"}, "done": True, "done_reason": "length"}
    assert translate.ollama_chat_to_openai_response(data, "m")["choices"][0]["finish_reason"] == "length"


def test_ollama_missing_counts_give_zero_usage_and_no_reasoning_key():
    out = translate.ollama_chat_to_openai_response({"message": {"content": "x"}, "done": True}, "m")
    assert out["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert "reasoning_content" not in out["choices"][0]["message"]
    assert "tool_calls" not in out["choices"][0]["message"]


def test_ollama_tool_calls_object_arguments_become_json_string():
    data = {
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },
        "done": True,
        "done_reason": "stop",
    }
    choice = translate.ollama_chat_to_openai_response(data, "m")["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function"
    assert call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}


def test_ollama_stream_line_to_openai_chunk_carries_thinking_and_content():
    data = {"message": {"role": "assistant", "content": "He", "thinking": "hmm"}, "done": False}
    chunk = translate.ollama_chat_line_to_openai_chunk(data, chunk_id="chatcmpl-1", created=5, model="m")
    assert chunk["id"] == "chatcmpl-1"
    assert chunk["created"] == 5
    assert chunk["object"] == "chat.completion.chunk"
    assert chunk["choices"][0]["delta"] == {"reasoning_content": "hmm", "content": "He"}
    assert chunk["choices"][0]["finish_reason"] is None


def test_ollama_final_stream_line_has_finish_reason_and_empty_delta():
    data = {"message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "length"}
    chunk = translate.ollama_chat_line_to_openai_chunk(data, chunk_id="c", created=1, model="m")
    assert chunk["choices"][0]["delta"] == {}
    assert chunk["choices"][0]["finish_reason"] == "length"


def test_ollama_stream_line_tool_calls_are_indexed():
    data = {
        "message": {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"function": {"name": "b", "arguments": {}}},
            ],
        },
        "done": False,
    }
    chunk = translate.ollama_chat_line_to_openai_chunk(data, chunk_id="c", created=1, model="m")
    calls = chunk["choices"][0]["delta"]["tool_calls"]
    assert [c["index"] for c in calls] == [0, 1]
    assert [c["function"]["name"] for c in calls] == ["a", "b"]
    assert orjson.loads(calls[0]["function"]["arguments"]) == {"x": 1}


def test_ollama_generate_to_openai_completion():
    data = {"response": "there", "done": True, "done_reason": "length", "prompt_eval_count": 2, "eval_count": 9}
    out = translate.ollama_generate_to_openai_completion(data, "m")
    assert out["object"] == "text_completion"
    assert out["id"].startswith("cmpl-")
    assert out["choices"][0]["text"] == "there"
    assert out["choices"][0]["finish_reason"] == "length"
    assert out["usage"] == {"prompt_tokens": 2, "completion_tokens": 9, "total_tokens": 11}


def test_ollama_generate_line_to_openai_chunk_not_done_has_no_finish_reason():
    chunk = translate.ollama_generate_line_to_openai_chunk(
        {"response": "ab", "done": False}, chunk_id="cmpl-1", created=3, model="m"
    )
    assert chunk["object"] == "text_completion"
    assert chunk["choices"][0]["text"] == "ab"
    assert chunk["choices"][0]["finish_reason"] is None


def test_usage_chunk_has_no_choices():
    chunk = translate.usage_chunk("c", 1, "m", "chat.completion.chunk", 4, 6)
    assert chunk["choices"] == []
    assert chunk["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10}


# -- Ollama request -> OpenAI request ----------------------------------------------------------


def test_ollama_chat_request_options_map_to_openai_sampling():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "options": {"num_predict": 64, "temperature": 0.5, "top_p": 0.8, "seed": 7, "stop": ["x"]},
        "format": "json",
    }
    out = translate.ollama_chat_to_openai_request(body)
    assert out["model"] == "m"
    assert out["messages"] == [{"role": "user", "content": "hi"}]
    assert out["max_tokens"] == 64
    assert out["temperature"] == 0.5
    assert out["top_p"] == 0.8
    assert out["seed"] == 7
    assert out["stop"] == ["x"]
    assert out["response_format"] == {"type": "json_object"}
    assert "num_predict" not in out


@pytest.mark.parametrize("num_predict", [-1, -2])
def test_negative_num_predict_means_unlimited(num_predict):
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "options": {"num_predict": num_predict}}
    assert "max_tokens" not in translate.ollama_chat_to_openai_request(body)


def test_ollama_format_schema_becomes_json_schema_response_format():
    schema = {"type": "object"}
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "format": schema}
    rf = translate.ollama_chat_to_openai_request(body)["response_format"]
    assert rf["type"] == "json_schema"
    assert rf["json_schema"]["schema"] == schema


def test_ollama_thinking_becomes_reasoning_content_in_messages():
    body = {
        "model": "m",
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "a", "thinking": "because"},
        ],
    }
    messages = translate.ollama_chat_to_openai_request(body)["messages"]
    assert messages[1] == {"role": "assistant", "content": "a", "reasoning_content": "because"}


def test_ollama_images_become_image_url_content_parts():
    body = {"model": "m", "messages": [{"role": "user", "content": "describe", "images": ["AAAA", "BBBB"]}]}
    content = translate.ollama_chat_to_openai_request(body)["messages"][0]["content"]
    assert content[0] == {"type": "text", "text": "describe"}
    urls = [p["image_url"]["url"] for p in content[1:]]
    assert [p["type"] for p in content[1:]] == ["image_url", "image_url"]
    assert all(u.startswith("data:image/") for u in urls)
    assert [u.split(",", 1)[1] for u in urls] == ["AAAA", "BBBB"]


def test_images_round_trip_openai_to_ollama_and_back():
    ollama_message = {"role": "user", "content": "describe", "images": ["QUJD"]}
    openai_body = translate.ollama_chat_to_openai_request({"model": "m", "messages": [ollama_message]})
    back = translate.openai_chat_to_ollama(openai_body, "m", stream=False)["messages"][0]
    assert back == ollama_message


def test_ollama_tool_calls_in_messages_become_openai_tool_calls():
    body = {
        "model": "m",
        "messages": [
            {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]}
        ],
        "tools": [{"type": "function", "function": {"name": "f"}}],
    }
    out = translate.ollama_chat_to_openai_request(body)
    (call,) = out["messages"][0]["tool_calls"]
    assert call["function"]["name"] == "f"
    assert orjson.loads(call["function"]["arguments"]) == {"a": 1}
    assert out["tools"] == body["tools"]


def test_ollama_generate_with_system_becomes_chat():
    body = {"model": "m", "prompt": "Why?", "system": "Be brief.", "options": {"num_predict": 10}}
    kind, request = translate.ollama_generate_to_openai_request(body)
    assert kind == "chat"
    assert request["model"] == "m"
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Why?"},
    ]
    assert request["max_tokens"] == 10
    assert "prompt" not in request


def test_ollama_generate_without_system_has_single_user_message():
    kind, request = translate.ollama_generate_to_openai_request({"model": "m", "prompt": "Hi"})
    assert kind == "chat"
    assert request["messages"] == [{"role": "user", "content": "Hi"}]


def test_ollama_generate_raw_becomes_completion():
    body = {"model": "m", "prompt": "<s>raw", "raw": True, "system": "ignored", "options": {"temperature": 0}}
    kind, request = translate.ollama_generate_to_openai_request(body)
    assert kind == "completions"
    assert request == {"model": "m", "prompt": "<s>raw", "temperature": 0}


# -- OpenAI response -> Ollama response --------------------------------------------------------


def test_openai_chat_response_to_ollama():
    data = {
        "choices": [
            {
                "message": {"role": "assistant", "content": "Hi", "reasoning_content": "think"},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 8, "completion_tokens": 2, "total_tokens": 10},
    }
    out = translate.openai_to_ollama_chat_response(data, "m", 1234)
    assert out["model"] == "m"
    assert RFC3339_Z.match(out["created_at"])
    assert out["message"] == {"role": "assistant", "content": "Hi", "thinking": "think"}
    assert out["done"] is True
    assert out["done_reason"] == "length"
    assert out["prompt_eval_count"] == 8
    assert out["eval_count"] == 2
    assert out["total_duration"] == 1234


@pytest.mark.parametrize("finish", ["stop", "tool_calls", None, "content_filter"])
def test_non_length_finish_reasons_become_stop(finish):
    data = {"choices": [{"message": {"content": "x"}, "finish_reason": finish}]}
    assert translate.openai_to_ollama_chat_response(data, "m", 0)["done_reason"] == "stop"


def test_openai_tool_calls_string_arguments_become_ollama_objects():
    data = {
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"q": [1, 2]}'}}
                    ],
                },
                "finish_reason": "tool_calls",
            }
        ]
    }
    message = translate.openai_to_ollama_chat_response(data, "m", 0)["message"]
    assert message["content"] == ""
    assert message["tool_calls"] == [{"function": {"name": "f", "arguments": {"q": [1, 2]}}}]


def test_openai_response_without_usage_gives_zero_counts():
    out = translate.openai_to_ollama_chat_response({"choices": [{"message": {"content": "x"}}]}, "m", 5)
    assert out["prompt_eval_count"] == 0
    assert out["eval_count"] == 0


def test_openai_completion_to_ollama_generate_response():
    data = {
        "choices": [{"text": "done.", "finish_reason": "length"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    out = translate.openai_to_ollama_generate_response(data, "m", 99)
    assert out["response"] == "done."
    assert out["done"] is True
    assert out["done_reason"] == "length"
    assert (out["prompt_eval_count"], out["eval_count"]) == (3, 4)
    assert "message" not in out


def test_openai_chat_answer_to_ollama_generate_response_uses_message_and_thinking():
    data = {"choices": [{"message": {"content": "yes", "reasoning_content": "r"}, "finish_reason": "stop"}]}
    out = translate.openai_to_ollama_generate_response(data, "m", 0)
    assert out["response"] == "yes"
    assert out["thinking"] == "r"
    assert out["done_reason"] == "stop"


# -- OpenAI stream chunk -> Ollama NDJSON line -------------------------------------------------


def _delta_chunk(delta, finish=None):
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize(
    "chunk",
    [
        {"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}},
        {},
        _delta_chunk({"role": "assistant"}),
        _delta_chunk({"role": "assistant", "content": ""}),
        _delta_chunk({}, finish="stop"),
        {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}]},
    ],
    ids=["usage-only", "no-choices", "role-only", "empty-content", "finish-only", "empty-text"],
)
@pytest.mark.parametrize("generate", [False, True])
def test_chunk_without_payload_gives_none(chunk, generate):
    assert translate.openai_chunk_to_ollama_line(chunk, "m", generate=generate) is None


def test_chat_chunk_content_becomes_chat_line():
    line = translate.openai_chunk_to_ollama_line(_delta_chunk({"content": "Hel"}), "m", generate=False)
    assert line["model"] == "m"
    assert line["done"] is False
    assert RFC3339_Z.match(line["created_at"])
    assert line["message"] == {"role": "assistant", "content": "Hel"}
    assert "response" not in line


def test_chat_chunk_reasoning_content_becomes_thinking():
    line = translate.openai_chunk_to_ollama_line(_delta_chunk({"reasoning_content": "hmm"}), "m", generate=False)
    assert line["message"] == {"role": "assistant", "content": "", "thinking": "hmm"}


def test_chat_chunk_reasoning_content_in_generate_line():
    chunk = _delta_chunk({"content": "a", "reasoning_content": "b"})
    line = translate.openai_chunk_to_ollama_line(chunk, "m", generate=True)
    assert line["response"] == "a"
    assert line["thinking"] == "b"
    assert "message" not in line


def test_completion_chunk_text_becomes_generate_response():
    chunk = {"choices": [{"index": 0, "text": "lo", "finish_reason": None}]}
    line = translate.openai_chunk_to_ollama_line(chunk, "m", generate=True)
    assert line["response"] == "lo"
    assert line["done"] is False


def test_chat_chunk_complete_tool_call_goes_to_the_assembler_not_the_line():
    chunk = _delta_chunk(
        {
            "tool_calls": [
                {"index": 0, "id": "c", "type": "function", "function": {"name": "f", "arguments": '{"k": "v"}'}}
            ]
        }
    )
    assert translate.openai_chunk_to_ollama_line(chunk, "m", generate=False) is None
    assembler = translate.ToolCallAssembler()
    assembler.add(chunk)
    assert assembler.take() == [{"function": {"name": "f", "arguments": {"k": "v"}}}]


def test_tool_call_streamed_in_fragments_becomes_one_complete_ollama_tool_call():
    chunks = [
        _delta_chunk({"role": "assistant", "content": None}),
        _delta_chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                ]
            }
        ),
        _delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
        _delta_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
        _delta_chunk({}, finish="tool_calls"),
    ]
    assembler = translate.ToolCallAssembler()
    for chunk in chunks:
        line = translate.openai_chunk_to_ollama_line(chunk, "m", generate=False)
        assert line is None or "tool_calls" not in line["message"]
        assembler.add(chunk)
    assert assembler.take() == [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    assert assembler.take() == []


def test_two_streamed_tool_calls_stay_apart():
    assembler = translate.ToolCallAssembler()
    assembler.add(_delta_chunk({"tool_calls": [{"index": 0, "function": {"name": "a", "arguments": "{}"}}]}))
    assembler.add(_delta_chunk({"tool_calls": [{"index": 1, "function": {"name": "b", "arguments": '{"x": 1}'}}]}))
    line = translate.ollama_tool_call_line("m", assembler.take())
    assert line["message"]["tool_calls"] == [
        {"function": {"name": "a", "arguments": {}}},
        {"function": {"name": "b", "arguments": {"x": 1}}},
    ]


# -- Final Ollama line ---------------------------------------------------------------------------


def test_final_chat_line():
    line = translate.ollama_final_line(
        "m", generate=False, finish_reason="length", elapsed_ns=500, prompt=12, completion=34
    )
    assert line["model"] == "m"
    assert RFC3339_Z.match(line["created_at"])
    assert line["message"] == {"role": "assistant", "content": ""}
    assert "response" not in line
    assert line["done"] is True
    assert line["done_reason"] == "length"
    assert line["prompt_eval_count"] == 12
    assert line["eval_count"] == 34
    assert line["total_duration"] == 500
    assert line["eval_duration"] == 500
    assert line["load_duration"] == 0
    assert line["prompt_eval_duration"] == 0


def test_final_generate_line():
    line = translate.ollama_final_line("m", generate=True, finish_reason="stop", elapsed_ns=1, prompt=0, completion=1)
    assert line["response"] == ""
    assert "message" not in line
    assert line["done"] is True
    assert line["done_reason"] == "stop"
    assert line["eval_count"] == 1


def test_final_line_without_finish_reason_is_stop():
    line = translate.ollama_final_line("m", generate=True, finish_reason=None, elapsed_ns=1, prompt=0, completion=0)
    assert line["done_reason"] == "stop"


# -- Embeddings / helpers ----------------------------------------------------------------------


def test_embedding_inputs_wraps_a_string():
    assert translate.embedding_inputs("a") == ["a"]
    assert translate.embedding_inputs(("a", "b")) == ["a", "b"]


def test_openai_embeddings_response_indexes_vectors():
    out = translate.openai_embeddings_response([[0.1], [0.2]], "e", 7)
    assert out["object"] == "list"
    assert [d["index"] for d in out["data"]] == [0, 1]
    assert out["data"][1]["embedding"] == [0.2]
    assert out["usage"] == {"prompt_tokens": 7, "total_tokens": 7}


def test_completion_ids_are_unique_and_prefixed():
    a, b = translate.completion_id(), translate.completion_id("cmpl")
    assert a.startswith("chatcmpl-")
    assert b.startswith("cmpl-")
    assert translate.completion_id() != translate.completion_id()


# -- Ollama tool results → OpenAI tool messages ---------------------------------------------------


def test_ollama_tool_results_are_linked_to_their_calls():
    calls = [{"function": {"name": "weather", "arguments": {"city": "Paris"}}},
             {"function": {"name": "time", "arguments": {}}}]  # fmt: skip
    request = translate.ollama_chat_to_openai_request({"model": "m", "messages": [
        {"role": "user", "content": "Weather and time in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "12:00", "tool_name": "time"},
        {"role": "tool", "content": "sunny"},
    ]})  # fmt: skip
    assistant, by_name, by_order = request["messages"][1:]
    ids = {c["function"]["name"]: c["id"] for c in assistant["tool_calls"]}
    assert by_name == {"role": "tool", "content": "12:00", "tool_call_id": ids["time"]}
    assert by_order == {"role": "tool", "content": "sunny", "tool_call_id": ids["weather"]}


def test_an_ollama_tool_result_without_a_call_gets_an_id_and_keeps_a_given_one():
    request = translate.ollama_chat_to_openai_request({"model": "m", "messages": [
        {"role": "tool", "content": "x"}, {"role": "tool", "content": "y", "tool_call_id": "call_7"},
    ]})  # fmt: skip
    first, second = request["messages"]
    assert first["tool_call_id"].startswith("call_") and set(first) == {"role", "content", "tool_call_id"}
    assert second == {"role": "tool", "content": "y", "tool_call_id": "call_7"}
