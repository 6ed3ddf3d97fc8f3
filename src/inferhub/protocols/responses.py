"""The OpenAI Responses API (``POST /v1/responses``) translated to and from the chat shape the pipeline speaks.

Pure code, no I/O: the route validates and translates a request with ``to_chat``, sends the chat body
through the gateway, and turns the answer back with ``from_chat`` (or, streaming, feeds each chat chunk
to a ``ResponsesStream``). Field mapping (Responses ↔ chat completions):
``instructions`` ↔ a first system message; ``input`` items ↔ messages (``function_call`` ↔ an assistant
``tool_calls`` entry, ``function_call_output`` ↔ a ``tool`` message, ``reasoning`` items are not replayed);
``tools[{type: function, name, ...}]`` ↔ ``tools[{type: function, function: {...}}]``; ``text.format`` ↔
``response_format``; ``max_output_tokens`` ↔ ``max_tokens``; ``reasoning.effort`` ↔ ``reasoning_effort``;
``usage.input_tokens/output_tokens`` ↔ ``usage.prompt_tokens/completion_tokens``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson

from inferhub.json_checks import expect_object, expect_string, invalid, json_type, missing, unsupported

_ROLES = ("user", "assistant", "system", "developer")
_TOOL_CHOICES = ("auto", "none", "required")
_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh", "max")
_DETAILS = ("auto", "low", "high")
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")  # what OpenAI (and the chat checks) allow
# Output item types a client may replay from an earlier response that have no chat equivalent here.
_HOSTED_ITEMS = (
    "file_search_call",
    "web_search_call",
    "computer_call",
    "computer_call_output",
    "image_generation_call",
    "code_interpreter_call",
    "local_shell_call",
    "local_shell_call_output",
    "shell_call",
    "shell_call_output",
    "apply_patch_call",
    "apply_patch_call_output",
    "mcp_list_tools",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "custom_tool_call",
    "custom_tool_call_output",
    "compaction",
)
# Request fields Inferhub cannot honour: a 400 rather than a silent difference.
_UNSUPPORTED_FIELDS = {
    "conversation": "conversations are not supported; chain responses with previous_response_id",
    "prompt": "stored prompt templates are not supported; send instructions and input",
}


def new_id(prefix: str) -> str:
    """An id in OpenAI's form: ``resp_…``, ``msg_…``, ``fc_…``, ``rs_…``, ``call_…``."""
    return f"{prefix}_{uuid.uuid4().hex}"


# -- errors -------------------------------------------------------------------------------------


def _string(value: Any, param: str, *, non_empty: bool = False) -> str:
    if value is None:
        raise missing(param)
    return expect_string(value, param, non_empty=non_empty)


def _bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(name, f"expected a boolean, got {json_type(value)}")
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, f"expected a number, got {json_type(value)}")
    if not low <= value <= high:
        raise invalid(name, f"must be between {low:g} and {high:g}, got {value}")


def _positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"expected an integer, got {json_type(value)}")
    if value < 1:
        raise invalid(name, f"must be at least 1, got {value}")


# -- request: items → messages ------------------------------------------------------------------


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        raise invalid("input", f"expected a string or an array of input items, got {json_type(value)}")
    for index, item in enumerate(value):
        expect_object(item, f"input[{index}]")
    return value


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    url = part.get("image_url")
    if url is None:
        if part.get("file_id") is not None:
            raise unsupported(f"{param}.file_id", "file ids are not supported; send image_url (a URL or data URL)")
        raise missing(f"{param}.image_url")
    url = _string(url, f"{param}.image_url", non_empty=True)
    if not url.startswith(("http://", "https://", "data:")):
        raise invalid(f"{param}.image_url", "expected an http(s) URL or a data URL (data:image/png;base64,...)")
    image: dict[str, Any] = {"url": url}
    detail = part.get("detail")
    if detail is not None:
        if detail not in _DETAILS:
            raise invalid(f"{param}.detail", f"expected one of {', '.join(_DETAILS)}, got {detail!r}")
        image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def _content(content: Any, role: str, param: str) -> str | list[dict[str, Any]]:
    """A message's content as chat content: a string, or parts when it holds an image."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(param, f"expected a string or an array of content parts, got {json_type(content)}")
    parts: list[dict[str, Any]] = []
    for index, raw in enumerate(content):
        where = f"{param}[{index}]"
        part = expect_object(raw, where)
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
            parts.append({"type": "text", "text": _string(part.get("text"), f"{where}.text")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": _string(part.get("refusal"), f"{where}.refusal")})
        elif kind == "input_image":
            if role != "user":
                raise invalid(f"{where}.type", f"input_image parts are only allowed in user messages, not {role}")
            parts.append(_image_part(part, where))
        elif kind in ("input_file", "input_audio"):
            raise unsupported(f"{where}.type", f"{kind} content parts are not supported by Inferhub")
        elif kind is None:
            raise missing(f"{where}.type")
        else:
            raise invalid(f"{where}.type", f"unknown content part type {kind!r}")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _output_text(output: Any, param: str) -> str:
    """A function call's output as tool message text (a string, or text parts)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        content = _content(output, "tool", param)
        if isinstance(content, str):
            return content
    raise invalid(param, "expected a string or an array of input_text parts")


def _function_call(item: dict[str, Any], param: str) -> dict[str, Any]:
    call_id = _string(item.get("call_id"), f"{param}.call_id", non_empty=True)
    name = _string(item.get("name"), f"{param}.name", non_empty=True)
    arguments = _string(item.get("arguments"), f"{param}.arguments")
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _messages(items: Iterable[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Items in order as chat messages; function calls join the assistant message before them."""
    messages: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        param = f"{prefix}[{index}]"
        kind = item.get("type", "message")
        if kind == "message":
            role = item.get("role")
            if role is None:
                raise missing(f"{param}.role")
            if role not in _ROLES:
                raise invalid(f"{param}.role", f"expected one of {', '.join(_ROLES)}, got {role!r}")
            if item.get("content") is None:
                raise missing(f"{param}.content")
            messages.append({"role": role, "content": _content(item["content"], role, f"{param}.content")})
        elif kind == "function_call":
            call = _function_call(item, param)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str | None):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = _string(item.get("call_id"), f"{param}.call_id", non_empty=True)
            if item.get("output") is None:
                raise missing(f"{param}.output")
            output = _output_text(item["output"], f"{param}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            continue  # earlier thinking is not replayed: chat templates of reasoning models drop it too
        elif kind == "item_reference":
            raise unsupported(
                f"{param}.type", "item_reference items are not supported; send the items, or use previous_response_id"
            )
        elif kind in _HOSTED_ITEMS:
            raise unsupported(f"{param}.type", f"{kind} items are not supported by Inferhub (only function tools)")
        else:
            raise invalid(f"{param}.type", f"unknown input item type {kind!r}")
    return messages


# -- request: options ---------------------------------------------------------------------------


# Tools a hosted service runs on OpenAI's side (search, code, images, MCP) and Codex's multi-agent
# namespace: a self-hosted engine has none of them. Agents send some by default (Codex: web_search and
# namespace), so they are left out of what the engine sees rather than failing the turn; the model
# answers with the function tools it has. Client-run types the model must call (custom, local_shell)
# are refused instead: dropping those would break the agent later, without a word.
SKIPPED_TOOL_TYPES = frozenset({
    "web_search", "web_search_preview", "web_search_preview_2025_03_11", "file_search", "code_interpreter",
    "image_generation", "computer_use_preview", "mcp", "namespace",
})  # fmt: skip


def _tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The function tools in the Responses shape (as echoed back), checked."""
    tools = body.get("tools")
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("tools", f"expected an array of tools, got {json_type(tools)}")
    out: list[dict[str, Any]] = []
    for index, raw in enumerate(tools):
        param = f"tools[{index}]"
        tool = expect_object(raw, param)
        kind = tool.get("type")
        if kind is None:
            raise missing(f"{param}.type")
        if isinstance(kind, str) and kind in SKIPPED_TOOL_TYPES:
            continue
        if kind != "function":
            raise unsupported(
                f"{param}.type", f"{kind!r} tools are not supported by Inferhub; only 'function' tools are"
            )
        name = _string(tool.get("name"), f"{param}.name", non_empty=True)
        if not _TOOL_NAME.match(name):
            raise invalid(f"{param}.name", "up to 64 letters, digits, '_', '-' or '.'")
        function: dict[str, Any] = {"type": "function", "name": name}
        if tool.get("description") is not None:
            function["description"] = _string(tool["description"], f"{param}.description")
        if tool.get("parameters") is not None:
            function["parameters"] = expect_object(tool["parameters"], f"{param}.parameters")
        strict = tool.get("strict")
        if strict is not None and not isinstance(strict, bool):
            raise invalid(f"{param}.strict", f"expected a boolean, got {json_type(strict)}")
        function["strict"] = strict
        out.append(function)
    return out


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(body: dict[str, Any], tools: list[dict[str, Any]]) -> Any:
    """The chat ``tool_choice`` for the request's, or None when it sent none."""
    choice = body.get("tool_choice")
    if choice is None:
        return None
    if isinstance(choice, str):
        if choice not in _TOOL_CHOICES:
            raise invalid("tool_choice", f"expected one of {', '.join(_TOOL_CHOICES)} or an object, got {choice!r}")
        return choice
    choice = expect_object(choice, "tool_choice")
    if choice.get("type") != "function":
        raise unsupported("tool_choice.type", f"{choice.get('type')!r} is not supported; use {{type: function, name}}")
    name = _string(choice.get("name"), "tool_choice.name", non_empty=True)
    if name not in {t["name"] for t in tools}:
        raise invalid("tool_choice.name", f"no function tool named {name!r} in tools")
    return {"type": "function", "function": {"name": name}}


def _response_format(body: dict[str, Any]) -> dict[str, Any] | None:
    text = body.get("text")
    if text is None:
        return None
    text = expect_object(text, "text")
    verbosity = text.get("verbosity")
    if verbosity is not None and verbosity not in ("low", "medium", "high"):
        raise invalid("text.verbosity", f"expected one of low, medium, high, got {verbosity!r}")
    fmt = text.get("format")
    if fmt is None:
        return None
    fmt = expect_object(fmt, "text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema: dict[str, Any] = {
            "name": _string(fmt.get("name"), "text.format.name", non_empty=True),
            "schema": expect_object(fmt.get("schema"), "text.format.schema") if "schema" in fmt else None,
        }
        if schema["schema"] is None:
            raise missing("text.format.schema")
        if fmt.get("description") is not None:
            schema["description"] = _string(fmt["description"], "text.format.description")
        if fmt.get("strict") is not None:
            if not isinstance(fmt["strict"], bool):
                raise invalid("text.format.strict", f"expected a boolean, got {json_type(fmt['strict'])}")
            schema["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": schema}
    if kind is None:
        raise missing("text.format.type")
    raise invalid("text.format.type", f"expected one of text, json_object, json_schema, got {kind!r}")


def _metadata(body: dict[str, Any]) -> None:
    metadata = body.get("metadata")
    if metadata is None:
        return
    metadata = expect_object(metadata, "metadata")
    if len(metadata) > 16:
        raise invalid("metadata", f"at most 16 keys, got {len(metadata)}")
    for key, value in metadata.items():
        if len(key) > 64:
            raise invalid("metadata", f"keys are at most 64 characters, got {len(key)}")
        if not isinstance(value, str) or len(value) > 512:
            raise invalid(f"metadata.{key}", "expected a string of at most 512 characters")


def _reasoning_effort(body: dict[str, Any]) -> str | None:
    reasoning = body.get("reasoning")
    if reasoning is None:
        return None
    reasoning = expect_object(reasoning, "reasoning")
    effort = reasoning.get("effort")
    if effort is not None and effort not in _EFFORTS:
        raise invalid("reasoning.effort", f"expected one of {', '.join(_EFFORTS)}, got {effort!r}")
    return effort


def check_request(body: dict[str, Any]) -> None:
    """The checks of the fields that are not items, with a 400 naming the field."""
    model = body.get("model")
    if model is None:
        raise missing("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model", f"expected a non-empty string, got {json_type(model)}")
    for name, message in _UNSUPPORTED_FIELDS.items():
        if body.get(name) is not None:
            raise unsupported(name, message)
    for name in ("stream", "store", "background", "parallel_tool_calls"):
        _bool(body, name)
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _positive_int(body, "max_output_tokens")
    _positive_int(body, "max_tool_calls")
    for name in ("user", "instructions", "previous_response_id", "safety_identifier", "prompt_cache_key"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise invalid(name, f"expected a string, got {json_type(body[name])}")
    if body.get("background") and body.get("store") is False:
        raise invalid("background", "background responses must be stored; do not send store: false")
    _metadata(body)


def to_chat(body: dict[str, Any], history: Iterable[dict[str, Any]] = ()) -> dict[str, Any]:
    """A Responses request as an OpenAI chat body; ``history`` (the input and output items of the
    responses before it, for ``previous_response_id``) comes first. Raises a 400 naming a bad field."""
    check_request(body)
    if body.get("input") is None:
        raise missing("input")
    messages: list[dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    earlier = _messages(history, "history")
    current = _messages(_items(body), "input")
    if not earlier and not current:
        raise invalid("input", "must contain at least one message")
    messages += earlier + current
    tools = _tools(body)
    chat: dict[str, Any] = {"model": body["model"], "messages": messages}
    if tools:
        chat["tools"] = [_chat_tool(t) for t in tools]
    choice = _tool_choice(body, tools)
    if choice is not None:
        chat["tool_choice"] = choice
    if body.get("parallel_tool_calls") is not None and tools:
        chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    response_format = _response_format(body)
    if response_format is not None:
        chat["response_format"] = response_format
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    for name in ("temperature", "top_p", "user"):
        if body.get(name) is not None:
            chat[name] = body[name]
    effort = _reasoning_effort(body)
    if effort is not None:
        chat["reasoning_effort"] = effort
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat


# -- stored items -------------------------------------------------------------------------------


def input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's input in the Responses item shape, each with an id: what ``GET
    /v1/responses/{id}/input_items`` lists and what a later ``previous_response_id`` replays.
    Call it on a body ``to_chat`` accepted."""
    out: list[dict[str, Any]] = []
    for item in _items(body):
        kind = item.get("type", "message")
        if kind == "message":
            content = item["content"]
            if isinstance(content, str):
                part_type = "output_text" if item["role"] == "assistant" else "input_text"
                content = [{"type": part_type, "text": content}]
            if item["role"] == "assistant":  # an output message: its text parts carry annotations
                content = [{"annotations": [], **p} if p.get("type") == "output_text" else p for p in content]
            entry = {
                "type": "message",
                "id": item.get("id") or new_id("msg"),
                "role": item["role"],
                "content": content,
                "status": item.get("status") or "completed",
            }
        elif kind == "function_call":
            entry = {
                "type": "function_call",
                "id": item.get("id") or new_id("fc"),
                "call_id": item["call_id"],
                "name": item["name"],
                "arguments": item["arguments"],
                "status": item.get("status") or "completed",
            }
        elif kind == "function_call_output":
            entry = {
                "type": "function_call_output",
                "id": item.get("id") or new_id("fco"),
                "call_id": item["call_id"],
                "output": item["output"],
                "status": item.get("status") or "completed",
            }
        else:
            entry = {**item, "id": item.get("id") or new_id("rs")}
        out.append(entry)
    return out


# -- chat answer → Response ---------------------------------------------------------------------


def _echo_tool_choice(body: dict[str, Any]) -> Any:
    choice = body.get("tool_choice")
    return choice if choice is not None else "auto"


def response_shell(body: dict[str, Any], response_id: str, created_at: float, status: str) -> dict[str, Any]:
    """A Response with no output yet: the request's settings echoed, as OpenAI answers."""
    text = body.get("text") or {}
    reasoning = body.get("reasoning") or {}
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": bool(body.get("background", False)),
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "model": body.get("model"),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": body.get("store", True),
        "temperature": body.get("temperature"),
        "text": {"format": text.get("format") or {"type": "text"}, "verbosity": text.get("verbosity") or "medium"},
        "tool_choice": _echo_tool_choice(body),
        "tools": _tools(body),
        "top_p": body.get("top_p"),
        "truncation": body.get("truncation") or "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def usage(chat_usage: dict[str, Any] | None) -> dict[str, Any] | None:
    """Chat usage in the Responses shape."""
    if not chat_usage:
        return None
    prompt = chat_usage.get("prompt_tokens") or 0
    completion = chat_usage.get("completion_tokens") or 0
    cached = (chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning_tokens = (chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
        "total_tokens": chat_usage.get("total_tokens") or prompt + completion,
    }


def _incomplete_reason(finish_reason: str | None) -> str | None:
    return {"length": "max_output_tokens", "content_filter": "content_filter"}.get(finish_reason or "")


def reasoning_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": item_id,
        "summary": [],
        "status": status,
        "content": [{"type": "reasoning_text", "text": text}],
    }


def message_item(item_id: str, text: str | None, status: str = "completed") -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"type": "message", "id": item_id, "role": "assistant", "status": status, "content": content}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def finish(
    response: dict[str, Any], output: list[dict[str, Any]], finish_reason: str | None, chat_usage: dict[str, Any] | None
) -> dict[str, Any]:
    """Complete a Response shell with its output, status and usage."""
    reason = _incomplete_reason(finish_reason)
    response["output"] = output
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["completed_at"] = None if reason else time.time()
    response["usage"] = usage(chat_usage)
    return response


def _reasoning_text(message: dict[str, Any]) -> str | None:
    return message.get("reasoning_content") or message.get("reasoning")


def from_chat(result: dict[str, Any], request: dict[str, Any], response_id: str, created_at: float) -> dict[str, Any]:
    """An OpenAI ``chat.completion`` as the Response to ``request`` (the Responses body)."""
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    finish_reason = choice.get("finish_reason")
    item_status = "incomplete" if _incomplete_reason(finish_reason) else "completed"
    output: list[dict[str, Any]] = []
    thinking = _reasoning_text(message)
    if thinking:
        output.append(reasoning_item(new_id("rs"), thinking))
    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    content = message.get("content")
    if isinstance(content, list):  # some engines answer with text parts
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    if content or not calls:
        output.append(message_item(new_id("msg"), content or "", item_status))
    for call in calls:
        function = call.get("function") or {}
        arguments = function.get("arguments")
        if not isinstance(arguments, str):
            arguments = orjson.dumps(arguments or {}).decode()
        output.append(
            function_call_item(new_id("fc"), call.get("id") or new_id("call"), function.get("name") or "", arguments)
        )
    shell = response_shell(request, response_id, created_at, "in_progress")
    return finish(shell, output, finish_reason, result.get("usage"))


def output_items(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a stored Response that a later ``previous_response_id`` replays."""
    return list(response.get("output") or [])


# -- streaming ----------------------------------------------------------------------------------


def sse(event: dict[str, Any]) -> bytes:
    """One stream event as a server-sent event, named by its type as OpenAI sends it."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


class ResponsesStream:
    """Turns a stream of OpenAI chat chunks into the Responses events, in the order the SDK checks.

    ``start()`` gives ``response.created`` and ``response.in_progress``; ``feed(chunk)`` the events of one
    chunk; ``finish()`` closes the open items and gives ``response.completed`` (``response.incomplete``
    when the engine stopped at the token limit); ``fail(message)`` gives ``response.failed`` instead.
    Tool calls come as argument deltas by index (OpenAI engines) or whole in one chunk (Ollama): both work.
    """

    def __init__(self, request: dict[str, Any], response_id: str, created_at: float) -> None:
        self.request = request
        self.response = response_shell(request, response_id, created_at, "in_progress")
        self._sequence = 0
        self._output: list[dict[str, Any]] = []  # finished items, in output_index order
        self._open: dict[str, Any] | None = None  # the open reasoning or message item: {kind, index, item, text}
        self._calls: list[dict[str, Any]] = []  # the tool calls: {index, id, call_id, name, arguments, pending, done}
        self._by_index: dict[int, dict[str, Any]] = {}  # the engine's tool-call index → its latest call
        self._next_index = 0
        self._finish_reason: str | None = None
        self._usage: dict[str, Any] | None = None
        self._ended = False

    # -- events --

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": [dict(item) for item in self._output]}

    def start(self) -> list[dict[str, Any]]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def feed(self, chunk: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            thinking = _reasoning_text(delta)
            if thinking:
                events += self._text_delta("reasoning", thinking)
            if delta.get("content"):
                events += self._text_delta("message", delta["content"])
            for fragment in delta.get("tool_calls") or []:
                if isinstance(fragment, dict):
                    events += self._tool_fragment(fragment)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def _claim_index(self) -> int:
        index = self._next_index
        self._next_index += 1
        return index

    def _text_delta(self, kind: str, text: str) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is not None and self._open["kind"] != kind:
            events += self._close_open()
        if any(not c["done"] for c in self._calls):
            events += self._close_calls()
        if self._open is None:
            events += self._open_item(kind)
        opened = self._open
        opened["text"] += text
        name = "response.reasoning_text.delta" if kind == "reasoning" else "response.output_text.delta"
        extra: dict[str, Any] = {} if kind == "reasoning" else {"logprobs": []}
        events.append(
            self._event(name, item_id=opened["id"], output_index=opened["index"], content_index=0, delta=text, **extra)
        )
        return events

    def _open_item(self, kind: str) -> list[dict[str, Any]]:
        index = self._claim_index()
        item_id = new_id("rs" if kind == "reasoning" else "msg")
        if kind == "reasoning":
            item = {"type": "reasoning", "id": item_id, "summary": [], "content": [], "status": "in_progress"}
            part = {"type": "reasoning_text", "text": ""}
        else:
            item = message_item(item_id, None, "in_progress")
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        self._open = {"kind": kind, "index": index, "id": item_id, "text": ""}
        return [
            self._event("response.output_item.added", output_index=index, item=item),
            self._event("response.content_part.added", item_id=item_id, output_index=index, content_index=0, part=part),
        ]

    def _close_open(self) -> list[dict[str, Any]]:
        opened, self._open = self._open, None
        if opened is None:
            return []
        index, item_id, text = opened["index"], opened["id"], opened["text"]
        status = "incomplete" if _incomplete_reason(self._finish_reason) else "completed"
        if opened["kind"] == "reasoning":
            part = {"type": "reasoning_text", "text": text}
            done = self._event(
                "response.reasoning_text.done", item_id=item_id, output_index=index, content_index=0, text=text
            )
            item = reasoning_item(item_id, text)
        else:
            part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
            done = self._event(
                "response.output_text.done",
                item_id=item_id,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            item = message_item(item_id, text, status)
        events = [
            done,
            self._event("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part),
            self._event("response.output_item.done", output_index=index, item=item),
        ]
        self._output.append(item)
        return events

    def _tool_fragment(self, fragment: dict[str, Any]) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self._open is not None:
            events += self._close_open()
        position = fragment.get("index")
        if not isinstance(position, int):
            position = len(self._by_index)
        call = self._by_index.get(position)
        given = fragment.get("id")
        starts_another = call is not None and bool(given) and bool(call["given"]) and given != call["given"]
        if call is None or call["done"] or starts_another:
            # A new call; an index seen before means the engine counts each chunk's calls from 0 (Ollama's whole
            # calls, as translate.py passes them on), told apart from a continuation by a new call id.
            call = {"index": None, "id": None, "call_id": None, "name": "", "arguments": ""}
            call.update(pending="", done=False, given=None)
            self._calls.append(call)
            self._by_index[position] = call
        if given and not call["given"]:
            call["given"] = given
            call["call_id"] = call["call_id"] or given
        function = fragment.get("function") or {}
        call["name"] += function.get("name") or ""
        piece = function.get("arguments")
        if piece is not None and not isinstance(piece, str):
            piece = orjson.dumps(piece).decode()
        if call["index"] is None:
            call["pending"] += piece or ""
            if not call["name"]:
                return events  # OpenAI sends the name first; until then there is nothing to announce
            call["index"] = self._claim_index()
            call["id"] = new_id("fc")
            call["call_id"] = call["call_id"] or new_id("call")
            item = function_call_item(call["id"], call["call_id"], call["name"], "", "in_progress")
            events.append(self._event("response.output_item.added", output_index=call["index"], item=item))
            piece, call["pending"] = call["pending"], ""
        if piece:
            call["arguments"] += piece
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call["id"],
                    output_index=call["index"],
                    delta=piece,
                )
            )
        return events

    def _close_calls(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for call in sorted(
            (c for c in self._calls if not c["done"] and c["index"] is not None), key=lambda c: c["index"]
        ):
            call["done"] = True
            item = function_call_item(call["id"], call["call_id"], call["name"], call["arguments"])
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=call["id"],
                    output_index=call["index"],
                    arguments=call["arguments"],
                )
            )
            events.append(self._event("response.output_item.done", output_index=call["index"], item=item))
            self._output.append(item)
        for call in self._calls:
            call["done"] = True  # a fragment that never named its function is dropped
        return events

    def _close_all(self) -> list[dict[str, Any]]:
        return self._close_open() + self._close_calls()

    def finish(self) -> list[dict[str, Any]]:
        """The end of the engine's stream: close what is open, then the final Response."""
        if self._ended:
            return []
        events = self._close_all()
        if not any(item["type"] != "reasoning" for item in self._output):
            # No answer nor call (the engine said nothing, or only thought): one empty message, as from_chat gives.
            events += self._open_item("message")
            events += self._close_open()
        self._ended = True
        finish(self.response, self._output, self._finish_reason, self._usage)
        kind = "response.incomplete" if self.response["status"] == "incomplete" else "response.completed"
        events.append(self._event(kind, response=self._snapshot()))
        return events

    def fail(self, message: str, code: str = "server_error") -> list[dict[str, Any]]:
        """A fault mid-stream (the engine failed, or the client's limit ended it): ``response.failed``."""
        if self._ended:
            return []
        self._ended = True
        self.response["output"] = list(self._output)
        self.response["status"] = "failed"
        self.response["error"] = {"code": code, "message": message}
        self.response["usage"] = usage(self._usage)
        return [self._event("response.failed", response=self._snapshot())]

    def final_response(self) -> dict[str, Any]:
        """The Response as it ended (or as it stands, if not ended): what the store keeps."""
        return self._snapshot()
