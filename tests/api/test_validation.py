"""Request body checks: each bad input is a precise 400 naming the field."""

from __future__ import annotations

import pytest

from inferhub.api import validation
from inferhub.errors import InvalidRequest


def _chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def _raises(func, body, param):
    with pytest.raises(InvalidRequest) as info:
        func(body)
    error = info.value
    assert error.status_code == 400
    assert error.param == param
    if param is not None:
        assert param in error.message
    body_json = error.openai_body()["error"]
    assert body_json["type"] == "invalid_request_error"
    assert body_json["param"] == param
    return error


# -- parse_json_object -------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"   \n\t"])
def test_empty_body(raw):
    error = _raises(validation.parse_json_object, raw, None)
    assert error.code == "invalid_json"
    assert "empty" in error.message


@pytest.mark.parametrize("raw", [b"{", b"not json", b"{'model': 'x'}"])
def test_non_json_body(raw):
    error = _raises(validation.parse_json_object, raw, None)
    assert error.code == "invalid_json"
    assert "JSON" in error.message


@pytest.mark.parametrize(
    ("raw", "kind"), [(b"[1, 2]", "an array"), (b'"s"', "a string"), (b"3", "a number"), (b"null", "null")]
)
def test_non_object_json_body(raw, kind):
    error = _raises(validation.parse_json_object, raw, None)
    assert error.code == "invalid_json"
    assert kind in error.message


def test_object_body_parses():
    assert validation.parse_json_object(b' {"model": "m", "n": [1]} ') == {"model": "m", "n": [1]}


# -- model ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "check", [validation.check_chat, validation.check_completion, validation.check_embeddings,
              validation.check_ollama_chat, validation.check_ollama_generate],
)  # fmt: skip
def test_missing_model(check):
    error = _raises(check, {"messages": [{"role": "user", "content": "x"}], "prompt": "x", "input": "x"}, "model")
    assert error.code == "missing_required_parameter"


@pytest.mark.parametrize(
    ("model", "kind"),
    [(5, "a number"), (["m"], "an array"), (True, "a boolean"), ("", "non-empty"), ("  ", "non-empty")],
)
def test_bad_model(model, kind):
    error = _raises(validation.check_chat, _chat(model=model), "model")
    assert error.code == "invalid_value"
    assert kind in error.message


def test_require_model_returns_name():
    assert validation.require_model({"model": "phi3:mini"}) == "phi3:mini"


# -- chat -------------------------------------------------------------------------------------


def test_valid_chat_passes():
    body = _chat(
        stream=True,
        max_tokens=1,
        max_completion_tokens=100,
        temperature=2,
        top_p=0,
        stream_options={"include_usage": True},
    )
    body["messages"] += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "r", "tool_call_id": "c1"},
        {"role": "user", "content": [{"type": "text", "text": "x"}]},
        {"role": "system", "content": "s"},
        {"role": "developer", "content": "d"},
    ]
    assert validation.check_chat(body) is None


def test_messages_missing():
    error = _raises(validation.check_chat, {"model": "m"}, "messages")
    assert error.code == "missing_required_parameter"


@pytest.mark.parametrize("messages", ["hi", {"role": "user"}, 3])
def test_messages_not_a_list(messages):
    _raises(validation.check_chat, _chat(messages=messages), "messages")


def test_messages_empty():
    error = _raises(validation.check_chat, _chat(messages=[]), "messages")
    assert "at least one" in error.message


def test_message_not_an_object():
    _raises(validation.check_chat, _chat(messages=[{"role": "user", "content": "a"}, "b"]), "messages[1]")


@pytest.mark.parametrize("role", ["robot", None, "USER", 1])
def test_bad_role(role):
    error = _raises(validation.check_chat, _chat(messages=[{"role": role, "content": "x"}]), "messages[0].role")
    assert "user" in error.message  # lists the allowed roles


@pytest.mark.parametrize("content", [5, {"text": "x"}, True])
def test_bad_content_type(content):
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": content}]
    _raises(validation.check_chat, _chat(messages=messages), "messages[1].content")


@pytest.mark.parametrize(
    ("value", "fragment"), [(0, "at least 1"), (-5, "at least 1"), ("10", "a string"), (True, "a boolean"),
                            (1.5, "a number")],
)  # fmt: skip
@pytest.mark.parametrize("name", ["max_tokens", "max_completion_tokens"])
def test_bad_max_tokens(name, value, fragment):
    error = _raises(validation.check_chat, _chat(**{name: value}), name)
    assert fragment in error.message


@pytest.mark.parametrize("value", [3, -0.1, 2.0001])
def test_temperature_out_of_range(value):
    error = _raises(validation.check_chat, _chat(temperature=value), "temperature")
    assert "between 0 and 2" in error.message


@pytest.mark.parametrize("value", ["0.5", True, [1]])
def test_temperature_not_a_number(value):
    _raises(validation.check_chat, _chat(temperature=value), "temperature")


def test_top_p_out_of_range():
    error = _raises(validation.check_chat, _chat(top_p=1.5), "top_p")
    assert "between 0 and 1" in error.message


@pytest.mark.parametrize("value", ["yes", 1, "true"])
def test_stream_not_a_boolean(value):
    error = _raises(validation.check_chat, _chat(stream=value), "stream")
    assert "boolean" in error.message


def test_stream_options_not_an_object():
    _raises(validation.check_chat, _chat(stream_options=True), "stream_options")


def test_null_optional_fields_pass():
    validation.check_chat(_chat(stream=None, max_tokens=None, temperature=None, top_p=None, stream_options=None))


# -- completions ------------------------------------------------------------------------------


@pytest.mark.parametrize("prompt", ["text", ["a", "b"]])
def test_valid_completion_passes(prompt):
    validation.check_completion({"model": "m", "prompt": prompt, "max_tokens": 3})


def test_completion_prompt_missing():
    error = _raises(validation.check_completion, {"model": "m"}, "prompt")
    assert error.code == "missing_required_parameter"


@pytest.mark.parametrize("prompt", [[], [1, 2], ["a", 1], 5])
def test_completion_bad_prompt(prompt):
    _raises(validation.check_completion, {"model": "m", "prompt": prompt}, "prompt")


def test_completion_checks_sampling():
    _raises(validation.check_completion, {"model": "m", "prompt": "x", "max_tokens": 0}, "max_tokens")


# -- embeddings -------------------------------------------------------------------------------


def test_embeddings_string_input_returns_list():
    assert validation.check_embeddings({"model": "e", "input": "hello"}) == ["hello"]


def test_embeddings_list_input_returns_list():
    assert validation.check_embeddings({"model": "e", "input": ["a", "b"]}) == ["a", "b"]


def test_embeddings_2048_inputs_pass():
    assert len(validation.check_embeddings({"model": "e", "input": ["x"] * 2048})) == 2048


def test_embeddings_input_missing():
    error = _raises(validation.check_embeddings, {"model": "e"}, "input")
    assert error.code == "missing_required_parameter"


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ([], "at least one"),
        ([""], "must not be empty"),
        ("", "must not be empty"),
        (["a", ""], "must not be empty"),
        ([1, 2], "array of strings"),
        (["a", None], "array of strings"),
        ({"a": 1}, "array of strings"),
        (["x"] * 2049, "2048"),
    ],
    ids=["empty-list", "empty-string-item", "empty-string", "one-empty", "ints", "null-item", "object", "too-many"],
)
def test_embeddings_bad_input(value, fragment):
    error = _raises(validation.check_embeddings, {"model": "e", "input": value}, "input")
    assert fragment in error.message


# -- Ollama -----------------------------------------------------------------------------------


def _ollama_chat(**extra):
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}


def test_valid_ollama_chat_passes():
    body = _ollama_chat(stream=False, options={"temperature": 0.2, "num_predict": -1})
    body["messages"].append({"role": "assistant", "content": "x", "images": ["AAAA"]})
    body["messages"].append({"role": "tool"})  # content defaults to ""
    validation.check_ollama_chat(body)


def test_valid_ollama_chat_with_empty_options_passes():
    validation.check_ollama_chat(_ollama_chat(options={}))


@pytest.mark.parametrize("messages", [None, [], "hi", {"role": "user", "content": "x"}])
def test_ollama_chat_bad_messages(messages):
    body = _ollama_chat(messages=messages)
    if messages is None:
        del body["messages"]
    _raises(validation.check_ollama_chat, body, "messages")


@pytest.mark.parametrize("message", ["hi", {"role": "user", "content": 1}, {"role": "user", "content": None},
                                     {"role": "user", "content": [{"type": "text", "text": "x"}]}])  # fmt: skip
def test_ollama_chat_bad_message(message):
    _raises(validation.check_ollama_chat, _ollama_chat(messages=[{"role": "user", "content": "a"}, message]),
            "messages[1]")  # fmt: skip


def test_ollama_chat_bad_role():
    _raises(validation.check_ollama_chat, _ollama_chat(messages=[{"role": "bot", "content": "x"}]), "messages[0].role")


def test_ollama_chat_stream_not_boolean():
    _raises(validation.check_ollama_chat, _ollama_chat(stream="yes"), "stream")


def test_ollama_options_not_an_object():
    _raises(validation.check_ollama_chat, _ollama_chat(options=[1]), "options")


def test_ollama_options_temperature_out_of_range_is_rejected():
    with pytest.raises(InvalidRequest) as info:
        validation.check_ollama_chat(_ollama_chat(options={"temperature": 3}))
    assert info.value.status_code == 400
    assert "between 0 and 2" in info.value.message


def test_ollama_options_temperature_error_names_options_field():
    _raises(validation.check_ollama_chat, _ollama_chat(options={"temperature": 3}), "options.temperature")


@pytest.mark.parametrize(("value", "fragment"), [("10", "a string"), (True, "a boolean"), (1.5, "a number")])
def test_ollama_options_num_predict_not_an_integer(value, fragment):
    error = _raises(validation.check_ollama_chat, _ollama_chat(options={"num_predict": value}), "options.num_predict")
    assert fragment in error.message


def test_valid_ollama_generate_passes():
    validation.check_ollama_generate({"model": "m", "prompt": "hi", "stream": True, "options": {"num_predict": 5}})


@pytest.mark.parametrize(("prompt", "fragment"), [(5, "a number"), (["a"], "an array")])
def test_ollama_generate_bad_prompt(prompt, fragment):
    error = _raises(validation.check_ollama_generate, {"model": "m", "prompt": prompt}, "prompt")
    assert fragment in error.message


def test_ollama_generate_without_prompt_is_accepted_as_a_load_request():
    # Ollama treats an empty or missing prompt as "load the model"; the route answers done_reason "load".
    validation.check_ollama_generate({"model": "m"})
    validation.check_ollama_generate({"model": "m", "prompt": ""})


def test_ollama_generate_checks_common_fields():
    _raises(validation.check_ollama_generate, {"model": "m", "prompt": "x", "stream": "no"}, "stream")
    _raises(validation.check_ollama_generate, {"model": "m", "prompt": "x", "options": "hot"}, "options")


# -- as strict as the engines: messages, content parts, tools, options (issue 13) --------------

CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def _one(**message):
    return _chat(messages=[message])


def test_valid_strict_chat_passes():
    body = _chat(
        messages=[
            {"role": "system", "content": [{"type": "text", "text": "s"}]},
            {"role": "user", "name": "ann", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA", "detail": "low"}},
                {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
                {"type": "file", "file": {"file_id": "file-1"}},
            ]},
            {"role": "assistant", "content": None, "tool_calls": [CALL]},
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}], "reasoning_content": "r"},
            {"role": "function", "name": "f", "content": None},
        ],
        tools=[TOOL], tool_choice={"type": "function", "function": {"name": "f"}}, n=2, stop=["a", "b"],
        presence_penalty=-2, frequency_penalty=2, seed=-1, logprobs=True, top_logprobs=20, user="u",
        logit_bias={"50256": -100}, response_format={"type": "json_schema", "json_schema": {"name": "a",
                                                                                          "schema": {}}},
    )  # fmt: skip
    assert validation.check_chat(body) is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (_one(role="tool", content="x"), "messages[0].tool_call_id"),
        (_one(role="tool", content="x", tool_call_id=5), "messages[0].tool_call_id"),
        (_one(role="tool", content="x", tool_call_id=""), "messages[0].tool_call_id"),
        (_one(role="tool", tool_call_id="c1"), "messages[0].content"),
        (_one(role="user"), "messages[0].content"),
        (_one(role="assistant", content=None), "messages[0].content"),
        (_one(role="assistant", content=None, tool_calls=[]), "messages[0].content"),
        (_one(role="function", content="x"), "messages[0].name"),
        (_one(role="user", content="x", name=5), "messages[0].name"),
        (_one(role="user", content=[]), "messages[0].content"),
        (_one(role="user", content=["x"]), "messages[0].content[0]"),
        (_one(role="user", content=[{"text": "x"}]), "messages[0].content[0].type"),
        (_one(role="user", content=[{"type": "bogus"}]), "messages[0].content[0].type"),
        (_one(role="user", content=[{"type": "text"}]), "messages[0].content[0].text"),
        (_one(role="user", content=[{"type": "image_url", "image_url": "http://x"}]),
         "messages[0].content[0].image_url"),
        (_one(role="user", content=[{"type": "image_url", "image_url": {"url": ""}}]),
         "messages[0].content[0].image_url.url"),
        (_one(role="user", content=[{"type": "image_url", "image_url": {"url": "u", "detail": "max"}}]),
         "messages[0].content[0].image_url.detail"),
        (_one(role="user", content=[{"type": "input_audio", "input_audio": {"data": "A", "format": "ogg"}}]),
         "messages[0].content[0].input_audio.format"),
        (_one(role="user", content=[{"type": "file", "file": {}}]), "messages[0].content[0].file"),
        (_one(role="system", content=[{"type": "image_url", "image_url": {"url": "u"}}]),
         "messages[0].content[0].type"),
        (_one(role="assistant", content=[{"type": "refusal"}]), "messages[0].content[0].refusal"),
        (_one(role="assistant", tool_calls="x"), "messages[0].tool_calls"),
        (_one(role="assistant", tool_calls=[{}]), "messages[0].tool_calls[0].id"),
        (_one(role="assistant", tool_calls=[{**CALL, "type": "code"}]), "messages[0].tool_calls[0].type"),
        (_one(role="assistant", tool_calls=[{**CALL, "function": {"arguments": "{}"}}]),
         "messages[0].tool_calls[0].function.name"),
        (_one(role="assistant", tool_calls=[{**CALL, "function": {"name": "f", "arguments": {}}}]),
         "messages[0].tool_calls[0].function.arguments"),
        (_chat(tools="x"), "tools"),
        (_chat(tools=[1]), "tools[0]"),
        (_chat(tools=[{"type": "retrieval"}]), "tools[0].type"),
        (_chat(tools=[{"type": "function"}]), "tools[0].function"),
        (_chat(tools=[{"type": "function", "function": {"name": "a b"}}]), "tools[0].function.name"),
        (_chat(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
         "tools[0].function.parameters"),
        (_chat(tools=[TOOL], tool_choice="sometimes"), "tool_choice"),
        (_chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "g"}}),
         "tool_choice.function.name"),
        (_chat(n=0), "n"), (_chat(n=1000), "n"), (_chat(n="2"), "n"),
        (_chat(presence_penalty=3), "presence_penalty"), (_chat(frequency_penalty="x"), "frequency_penalty"),
        (_chat(seed=1.5), "seed"), (_chat(top_logprobs=21), "top_logprobs"), (_chat(logprobs="x"), "logprobs"),
        (_chat(stop=5), "stop"), (_chat(stop=["a"] * 17), "stop"), (_chat(user=5), "user"),
        (_chat(logit_bias=[1]), "logit_bias"), (_chat(logit_bias={"1": 101}), "logit_bias.1"),
        (_chat(response_format="json"), "response_format"),
        (_chat(response_format={"type": "xml"}), "response_format.type"),
        (_chat(response_format={"type": "json_schema"}), "response_format.json_schema"),
    ],
)  # fmt: skip
def test_strict_chat_checks_name_the_field(body, param):
    _raises(validation.check_chat, body, param)


def test_completion_options_are_checked_too():
    _raises(validation.check_completion, {"model": "m", "prompt": "x", "echo": "yes"}, "echo")
    _raises(validation.check_completion, {"model": "m", "prompt": "x", "n": -1}, "n")


def test_valid_ollama_tool_exchange_passes():
    body = _ollama_chat(tools=[TOOL], format={"type": "object"}, options={"top_k": 40, "stop": ["x"]})
    body["messages"] += [
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": {"a": 1}}}]},
        {"role": "tool", "content": "42", "tool_name": "f"},
        {"role": "tool", "content": "no name, no id"},
    ]
    validation.check_ollama_chat(body)


@pytest.mark.parametrize(
    ("message", "param"),
    [
        ({"role": "developer", "content": "x"}, "messages[1].role"),
        ({"role": "user", "content": "x", "images": "AAAA"}, "messages[1].images"),
        ({"role": "user", "content": "x", "images": [5]}, "messages[1].images"),
        ({"role": "assistant", "content": "", "tool_calls": {}}, "messages[1].tool_calls"),
        ({"role": "assistant", "content": "", "tool_calls": [{"function": {}}]},
         "messages[1].tool_calls[0].function.name"),
        ({"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "f", "arguments": "{}"}}]},
         "messages[1].tool_calls[0].function.arguments"),
        ({"role": "tool", "content": "x", "tool_name": 5}, "messages[1].tool_name"),
    ],
)  # fmt: skip
def test_strict_ollama_chat_checks_name_the_field(message, param):
    _raises(validation.check_ollama_chat, _ollama_chat(messages=[{"role": "user", "content": "a"}, message]), param)


@pytest.mark.parametrize(
    ("extra", "param"),
    [({"options": {"top_k": "x"}}, "options.top_k"), ({"options": {"num_ctx": 1.5}}, "options.num_ctx"),
     ({"options": {"top_p": "x"}}, "options.top_p"), ({"options": {"stop": "x"}}, "options.stop"),
     ({"format": "xml"}, "format"), ({"tools": [{"type": "x"}]}, "tools[0].type")],
)  # fmt: skip
def test_strict_ollama_options_name_the_field(extra, param):
    _raises(validation.check_ollama_chat, _ollama_chat(**extra), param)
