"""Checks of chat messages, tools and generation options, as strict as the engines behind the gateway.

What an engine would refuse is refused here first, with a 400 whose ``param`` names the field
(``messages[2].tool_call_id``): a request the engine cannot use never reaches it. The OpenAI rules follow
OpenAI's chat completions API; the Ollama rules follow Ollama's ``/api/chat`` (which has no
``tool_call_id``: tool results are matched to calls by order or ``tool_name``).
"""

from __future__ import annotations

import re
from typing import Any

from inferhub.json_checks import expect_object, expect_string, invalid, json_type, missing

OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
OLLAMA_ROLES = ("system", "user", "assistant", "tool")

# Content part types each role may send (OpenAI).
_PART_TYPES: dict[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url", "input_audio", "file"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
    "function": ("text",),
}
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_TOOL_CHOICES = ("none", "auto", "required")
_RESPONSE_FORMATS = ("text", "json_object", "json_schema")


def _number(value: Any, param: str, low: float, high: float, *, integer: bool = False) -> None:
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise invalid(param, f"expected {'an integer' if integer else 'a number'}, got {json_type(value)}")
    if not low <= value <= high:
        raise invalid(param, f"must be between {low:g} and {high:g}, got {value}")


# -- OpenAI -------------------------------------------------------------------------------------


def check_openai_messages(messages: list[Any]) -> None:
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(where, f"expected an object, got {json_type(message)}")
        role = message.get("role")
        if role not in OPENAI_ROLES:
            raise invalid(f"{where}.role", f"expected one of {', '.join(OPENAI_ROLES)}, got {role!r}")
        if message.get("name") is not None:
            expect_string(message["name"], f"{where}.name", non_empty=True)
        has_calls = _check_assistant_calls(message, where) if role == "assistant" else False
        content = message.get("content")
        if content is not None:
            _check_content(content, role, f"{where}.content")
        elif not _may_omit_content(message, role, has_calls):
            raise missing(f"{where}.content")
        if role == "tool":
            if message.get("tool_call_id") is None:
                raise missing(f"{where}.tool_call_id")
            expect_string(message["tool_call_id"], f"{where}.tool_call_id", non_empty=True)
        if role == "function" and message.get("name") is None:
            raise missing(f"{where}.name")
        for text_field in ("refusal", "reasoning_content"):
            if message.get(text_field) is not None:
                expect_string(message[text_field], f"{where}.{text_field}")


def _may_omit_content(message: dict[str, Any], role: str, has_calls: bool) -> bool:
    """An assistant message that calls tools, and a function result, may have ``content: null``."""
    if role == "assistant":
        return has_calls or message.get("function_call") is not None
    return role == "function" and "content" in message


def _check_content(content: Any, role: str, where: str) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise invalid(where, f"expected a string or an array of content parts, got {json_type(content)}")
    if not content:
        raise invalid(where, "an array of content parts must not be empty")
    allowed = _PART_TYPES[role]
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        expect_object(part, at)
        kind = part.get("type")
        if kind not in allowed:
            raise invalid(f"{at}.type", f"a {role} message's content parts are {', '.join(allowed)}; got {kind!r}")
        if kind == "text":
            expect_string(part.get("text"), f"{at}.text")
        elif kind == "refusal":
            expect_string(part.get("refusal"), f"{at}.refusal")
        elif kind == "image_url":
            image = expect_object(part.get("image_url"), f"{at}.image_url")
            expect_string(image.get("url"), f"{at}.image_url.url", non_empty=True)
            if image.get("detail") is not None and image["detail"] not in ("auto", "low", "high"):
                raise invalid(f"{at}.image_url.detail", f"expected auto, low or high, got {image['detail']!r}")
        elif kind == "input_audio":
            audio = expect_object(part.get("input_audio"), f"{at}.input_audio")
            expect_string(audio.get("data"), f"{at}.input_audio.data", non_empty=True)
            if audio.get("format") not in ("wav", "mp3"):
                raise invalid(f"{at}.input_audio.format", f"expected wav or mp3, got {audio.get('format')!r}")
        elif kind == "file":
            file = expect_object(part.get("file"), f"{at}.file")
            if not any(isinstance(file.get(k), str) and file[k] for k in ("file_id", "file_data")):
                raise invalid(f"{at}.file", "expected a file_id or file_data string")


def _check_assistant_calls(message: dict[str, Any], where: str) -> bool:
    calls = message.get("tool_calls")
    if calls is None:
        return False
    if not isinstance(calls, list):
        raise invalid(f"{where}.tool_calls", f"expected an array, got {json_type(calls)}")
    for index, call in enumerate(calls):
        at = f"{where}.tool_calls[{index}]"
        expect_object(call, at)
        expect_string(call.get("id"), f"{at}.id", non_empty=True)
        if call.get("type", "function") != "function":
            raise invalid(f"{at}.type", f"expected 'function', got {call.get('type')!r}")
        function = expect_object(call.get("function"), f"{at}.function")
        expect_string(function.get("name"), f"{at}.function.name", non_empty=True)
        expect_string(function.get("arguments"), f"{at}.function.arguments")
    return bool(calls)


def check_tools(body: dict[str, Any]) -> None:
    """``tools`` and ``tool_choice``, the same on both protocols (Ollama takes OpenAI's tool shape)."""
    tools = body.get("tools")
    names: set[str] = set()
    if tools is not None:
        if not isinstance(tools, list):
            raise invalid("tools", f"expected an array, got {json_type(tools)}")
        for index, tool in enumerate(tools):
            at = f"tools[{index}]"
            expect_object(tool, at)
            if tool.get("type", "function") != "function":
                raise invalid(f"{at}.type", f"expected 'function', got {tool.get('type')!r}")
            function = expect_object(tool.get("function"), f"{at}.function")
            name = expect_string(function.get("name"), f"{at}.function.name", non_empty=True)
            if not _TOOL_NAME.match(name):
                raise invalid(f"{at}.function.name", "up to 64 letters, digits, '_', '-' or '.'")
            names.add(name)
            if function.get("description") is not None:
                expect_string(function["description"], f"{at}.function.description")
            if function.get("parameters") is not None:
                expect_object(function["parameters"], f"{at}.function.parameters")
    choice = body.get("tool_choice")
    if choice is None:
        return
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise invalid("tool_choice", f"expected one of {', '.join(_TOOL_CHOICES)} or an object, got {choice!r}")
        return
    expect_object(choice, "tool_choice")
    function = expect_object(choice.get("function"), "tool_choice.function")
    name = expect_string(function.get("name"), "tool_choice.function.name", non_empty=True)
    if name not in names:
        raise invalid("tool_choice.function.name", f"no tool named {name!r} in tools")


def check_openai_options(body: dict[str, Any]) -> None:
    """The generation options engines check (``max_tokens``, ``temperature``, ``top_p`` are checked apart)."""
    if body.get("n") is not None:
        _number(body["n"], "n", 1, 128, integer=True)
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) is not None:
            _number(body[name], name, -2, 2)
    if body.get("seed") is not None:
        _number(body["seed"], "seed", -(2**63), 2**63 - 1, integer=True)
    if body.get("top_logprobs") is not None:
        _number(body["top_logprobs"], "top_logprobs", 0, 20, integer=True)
    for name in ("logprobs", "parallel_tool_calls", "echo"):
        value = body.get(name)
        if value is not None and not isinstance(value, bool) and not (name == "logprobs" and isinstance(value, int)):
            raise invalid(name, f"expected a boolean, got {json_type(value)}")
    if body.get("user") is not None:
        expect_string(body["user"], "user")
    _check_stop(body.get("stop"))
    _check_logit_bias(body.get("logit_bias"))
    _check_response_format(body.get("response_format"))


def _check_stop(stop: Any) -> None:
    if stop is None or isinstance(stop, str):
        return
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise invalid("stop", "expected a string or an array of strings")
    if len(stop) > 16:
        raise invalid("stop", f"at most 16 stop sequences, got {len(stop)}")


def _check_logit_bias(bias: Any) -> None:
    if bias is None:
        return
    for token, value in expect_object(bias, "logit_bias").items():
        _number(value, f"logit_bias.{token}", -100, 100)


def _check_response_format(response_format: Any) -> None:
    if response_format is None:
        return
    kind = expect_object(response_format, "response_format").get("type")
    if kind not in _RESPONSE_FORMATS:
        raise invalid("response_format.type", f"expected one of {', '.join(_RESPONSE_FORMATS)}, got {kind!r}")
    if kind == "json_schema":
        schema = expect_object(response_format.get("json_schema"), "response_format.json_schema")
        if schema.get("schema") is not None:
            expect_object(schema["schema"], "response_format.json_schema.schema")


# -- Ollama -------------------------------------------------------------------------------------


def check_ollama_messages(messages: list[Any]) -> None:
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
            raise invalid(where, "expected an object with a string 'content'")
        if message.get("role") not in OLLAMA_ROLES:
            raise invalid(f"{where}.role", f"expected one of {', '.join(OLLAMA_ROLES)}, got {message.get('role')!r}")
        images = message.get("images")
        if images is not None and (not isinstance(images, list) or not all(isinstance(i, str) and i for i in images)):
            raise invalid(f"{where}.images", "expected an array of base64-encoded images")
        for text_field in ("thinking", "tool_name", "tool_call_id"):
            if message.get(text_field) is not None:
                expect_string(message[text_field], f"{where}.{text_field}")
        calls = message.get("tool_calls")
        if calls is None:
            continue
        if not isinstance(calls, list):
            raise invalid(f"{where}.tool_calls", f"expected an array, got {json_type(calls)}")
        for number, call in enumerate(calls):
            at = f"{where}.tool_calls[{number}]"
            function = expect_object(expect_object(call, at).get("function"), f"{at}.function")
            expect_string(function.get("name"), f"{at}.function.name", non_empty=True)
            if function.get("arguments") is not None:
                expect_object(function["arguments"], f"{at}.function.arguments")


_OLLAMA_INTEGER_OPTIONS = ("num_ctx", "top_k", "seed", "repeat_last_n", "num_keep", "num_batch")
_OLLAMA_NUMBER_OPTIONS = ("top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty", "typical_p")


def check_ollama_options(options: dict[str, Any]) -> None:
    """Ollama refuses an option of the wrong type (``option "top_k" must be of type integer``)."""
    for name in _OLLAMA_INTEGER_OPTIONS:
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise invalid(f"options.{name}", f"expected an integer, got {json_type(value)}")
    for name in _OLLAMA_NUMBER_OPTIONS:
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise invalid(f"options.{name}", f"expected a number, got {json_type(value)}")
    stop = options.get("stop")
    if stop is not None and (not isinstance(stop, list) or not all(isinstance(s, str) for s in stop)):
        raise invalid("options.stop", "expected an array of strings")


def check_ollama_format(body: dict[str, Any]) -> None:
    fmt = body.get("format")
    if fmt is not None and fmt not in ("", "json") and not isinstance(fmt, dict):
        raise invalid("format", f'expected "json" or a JSON schema object, got {fmt!r}'[:200])
