"""The Anthropic Messages API ↔ the OpenAI chat shape the pipeline speaks. Pure functions; no I/O.

Request (``POST /v1/messages`` → chat body): ``system`` → a leading system message; ``text`` blocks →
text; ``image`` blocks → ``image_url`` parts (base64 as a ``data:`` URL, a URL as is); ``tool_use`` →
the assistant's ``tool_calls`` (``input`` as a JSON string); ``tool_result`` → a ``tool`` message with
``tool_call_id`` (placed before the rest of that user turn, as OpenAI wants results right after the
calls); ``thinking`` blocks of past turns are dropped (chat templates strip past reasoning, and engines
such as DeepSeek's refuse it in input); ``tools[].input_schema`` → ``function.parameters``;
``tool_choice`` auto/any/tool/none → auto/required/{function}/none, ``disable_parallel_tool_use`` →
``parallel_tool_calls: false``; ``stop_sequences`` → ``stop``; ``metadata.user_id`` → ``user``;
``top_k`` passes as ``top_k`` (vLLM, llama.cpp and Ollama take it); ``thinking: {type: enabled}`` →
``reasoning_effort`` from its budget (the one reasoning knob OpenAI-shaped engines share; Ollama's
translation turns it into ``think``); ``output_config.format`` → ``response_format`` json_schema.

Response (chat completion → Message): ``reasoning_content`` (or vLLM's ``reasoning``) → a ``thinking``
block with an empty ``signature`` (a self-hosted engine signs nothing); content → a ``text`` block;
``tool_calls`` → ``tool_use`` blocks; ``finish_reason`` → ``stop_reason``; ``usage`` → ``usage``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from inferhub.backends.base import StreamEvent
from inferhub.errors import APIError, InvalidRequest
from inferhub.json_checks import expect_object, expect_string, invalid, json_type

Event = tuple[str, dict[str, Any]]  # an SSE event: its name and its data

IMAGE_MEDIA_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}
_MIN_THINKING_BUDGET = 1024  # as Anthropic requires
EPOCH = "1970-01-01T00:00:00Z"  # a model's created_at when its release date is unknown, as Anthropic allows

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def tool_use_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


# -- checks ---------------------------------------------------------------------------------------


def _missing(param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: Field required", param=param, code="missing_required_parameter")


def _array(value: Any, param: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(param, f"expected an array, got {json_type(value)}")
    if not value:
        raise invalid(param, "must not be empty")
    return value


def _integer(value: Any, param: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(param, f"expected an integer, got {json_type(value)}")
    if value < low:
        raise invalid(param, f"must be at least {low}, got {value}")
    return value


def _number(value: Any, param: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(param, f"expected a number, got {json_type(value)}")
    if not low <= value <= high:
        raise invalid(param, f"must be between {low:g} and {high:g}, got {value}")
    return value


def _required(body: dict[str, Any], name: str, where: str = "") -> Any:
    if body.get(name) is None:
        raise _missing(f"{where}{name}")
    return body[name]


# -- request: Messages → chat ---------------------------------------------------------------------


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """A ``POST /v1/messages`` body as the chat body the pipeline runs; a 400 naming the field if bad."""
    return _chat_body(body, counting=False)


def count_tokens_body(body: dict[str, Any]) -> dict[str, Any]:
    """A ``POST /v1/messages/count_tokens`` body as the chat body whose prompt the engine's counter counts
    (no ``max_tokens``: Anthropic does not ask for one there)."""
    return _chat_body(body, counting=True)


def count_tokens_result(input_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens}


def _chat_body(body: dict[str, Any], *, counting: bool) -> dict[str, Any]:
    expect_object(body, "body")
    model = expect_string(_required(body, "model"), "model", non_empty=True)
    chat: dict[str, Any] = {"model": model}
    max_tokens = None
    if not counting:
        max_tokens = _integer(_required(body, "max_tokens"), "max_tokens", 1)
        chat["max_tokens"] = max_tokens
    chat["messages"] = _system(body.get("system")) + _messages(_required(body, "messages"))
    names = _tools(body.get("tools"), chat)
    _tool_choice(body.get("tool_choice"), names, chat)
    _thinking(body.get("thinking"), max_tokens, chat)
    _output_config(body, chat)
    if counting:
        return chat
    for name, high in (("temperature", 1.0), ("top_p", 1.0)):
        if body.get(name) is not None:
            chat[name] = _number(body[name], name, 0, high)
    if body.get("top_k") is not None:
        top_k = _integer(body["top_k"], "top_k", 0)
        if top_k:  # 0: no top-k cut, which engines spell differently; leave them their default
            chat["top_k"] = top_k
    if body.get("stop_sequences") is not None:
        stops = body["stop_sequences"]
        if not isinstance(stops, list):
            raise invalid("stop_sequences", f"expected an array of strings, got {json_type(stops)}")
        for index, stop in enumerate(stops):
            expect_string(stop, f"stop_sequences[{index}]", non_empty=True)
        if stops:
            chat["stop"] = stops
    if body.get("metadata") is not None:
        user = expect_object(body["metadata"], "metadata").get("user_id")
        if user is not None:
            chat["user"] = expect_string(user, "metadata.user_id")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise invalid("stream", f"expected a boolean, got {json_type(stream)}")
    if stream:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # message_delta carries the usage
    return chat


def _text_blocks(value: Any, param: str) -> str:
    """A list of ``text`` blocks (``system``, a ``tool_result``'s content) as one string."""
    texts = []
    for index, block in enumerate(_array(value, param)):
        at = f"{param}[{index}]"
        expect_object(block, at)
        if block.get("type") != "text":
            raise invalid(f"{at}.type", f"expected 'text', got {block.get('type')!r}")
        texts.append(expect_string(block.get("text"), f"{at}.text"))
    return "\n".join(texts)


def _system(value: Any) -> list[dict[str, Any]]:
    if value is None:
        return []
    text = value if isinstance(value, str) else None
    if text is None:
        if not isinstance(value, list):
            raise invalid("system", f"expected a string or an array of text blocks, got {json_type(value)}")
        text = _text_blocks(value, "system") if value else ""
    return [{"role": "system", "content": text}] if text else []


def _messages(value: Any) -> list[dict[str, Any]]:
    messages = _array(value, "messages")
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        expect_object(message, where)
        role = message.get("role")
        if role not in ("user", "assistant", "system"):
            raise invalid(f"{where}.role", f"expected 'user', 'assistant' or 'system', got {role!r}")
        content = message.get("content")
        if content is None:
            raise _missing(f"{where}.content")
        if role == "system":  # a system turn mid-conversation (Claude Code sends them: mid-conversation-system)
            text = content if isinstance(content, str) else _text_blocks(content, f"{where}.content")
            if text:
                out.append({"role": "system", "content": text})
            continue
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list):
            raise invalid(f"{where}.content", f"expected a string or an array of blocks, got {json_type(content)}")
        if not content and not (role == "assistant" and index == len(messages) - 1):
            raise invalid(f"{where}.content", "must not be empty")
        if role == "user":
            out.extend(_user_turn(content, where))
        elif content:  # an empty last assistant turn prefills nothing: engines need not see it
            out.append(_assistant_turn(content, where))
    return out


def _user_turn(blocks: list[Any], where: str) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages first (OpenAI wants them right after the calls), then the
    rest of the turn one user message."""
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        expect_object(block, at)
        kind = block.get("type")
        if kind == "text":
            parts.append({"type": "text", "text": expect_string(block.get("text"), f"{at}.text")})
        elif kind == "image":
            parts.append(_image_part(block, at))
        elif kind == "tool_result":
            result, images = _tool_result(block, at)
            results.append(result)
            parts.extend(images)
        elif kind == "document":
            raise invalid(f"{at}.type", "document blocks are not supported; send the document's text as a text block")
        else:
            raise invalid(f"{at}.type", f"a user message's blocks are text, image or tool_result; got {kind!r}")
    if parts:
        results.append({"role": "user", "content": _content(parts)})
    return results


def _content(parts: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """Text alone as a string: every chat template takes that, not all take arrays of parts."""
    if all(part["type"] == "text" for part in parts):
        return "\n".join(part["text"] for part in parts)
    return parts


def _image_part(block: dict[str, Any], at: str) -> dict[str, Any]:
    source = expect_object(block.get("source"), f"{at}.source")
    kind = source.get("type")
    if kind == "base64":
        media_type = source.get("media_type")
        if media_type not in IMAGE_MEDIA_TYPES:
            raise invalid(
                f"{at}.source.media_type", f"expected one of {', '.join(IMAGE_MEDIA_TYPES)}, got {media_type!r}"
            )
        data = expect_string(source.get("data"), f"{at}.source.data", non_empty=True)
        url = f"data:{media_type};base64,{data}"
    elif kind == "url":
        url = expect_string(source.get("url"), f"{at}.source.url", non_empty=True)
    else:
        raise invalid(f"{at}.source.type", f"expected 'base64' or 'url', got {kind!r}")
    return {"type": "image_url", "image_url": {"url": url}}


def _tool_result(block: dict[str, Any], at: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ``tool`` message, and the result's images (a tool message holds text only: they follow it)."""
    call_id = expect_string(block.get("tool_use_id"), f"{at}.tool_use_id", non_empty=True)
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        texts.append(content)
    elif isinstance(content, list):
        for index, part in enumerate(content):
            where = f"{at}.content[{index}]"
            expect_object(part, where)
            if part.get("type") == "text":
                texts.append(expect_string(part.get("text"), f"{where}.text"))
            elif part.get("type") == "image":
                images.append(_image_part(part, where))
            else:
                raise invalid(f"{where}.type", f"expected 'text' or 'image', got {part.get('type')!r}")
    elif content is not None:
        raise invalid(f"{at}.content", f"expected a string or an array of blocks, got {json_type(content)}")
    text = "\n".join(texts)
    is_error = block.get("is_error")
    if is_error is not None and not isinstance(is_error, bool):
        raise invalid(f"{at}.is_error", f"expected a boolean, got {json_type(is_error)}")
    if is_error:  # the chat shape has no error flag: the model reads it
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def _assistant_turn(blocks: list[Any], where: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for index, block in enumerate(blocks):
        at = f"{where}.content[{index}]"
        expect_object(block, at)
        kind = block.get("type")
        if kind == "text":
            texts.append(expect_string(block.get("text"), f"{at}.text"))
        elif kind == "tool_use":
            arguments = expect_object(block.get("input", {}), f"{at}.input")
            calls.append(
                {
                    "id": expect_string(block.get("id"), f"{at}.id", non_empty=True),
                    "type": "function",
                    "function": {
                        "name": expect_string(block.get("name"), f"{at}.name", non_empty=True),
                        "arguments": orjson.dumps(arguments).decode(),
                    },
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):  # past reasoning is dropped (module docstring)
            raise invalid(f"{at}.type", f"an assistant message's blocks are text, tool_use or thinking; got {kind!r}")
    message: dict[str, Any] = {"role": "assistant", "content": "\n".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tools(value: Any, chat: dict[str, Any]) -> set[str]:
    if value is None:
        return set()
    if not isinstance(value, list):
        raise invalid("tools", f"expected an array, got {json_type(value)}")
    names: set[str] = set()
    tools = []
    for index, tool in enumerate(value):
        at = f"tools[{index}]"
        expect_object(tool, at)
        if tool.get("type") not in (None, "custom"):
            raise invalid(
                f"{at}.type",
                f"{tool['type']!r} is a tool Anthropic runs itself; Inferhub serves client tools "
                "(name, description, input_schema) only",
            )
        name = expect_string(tool.get("name"), f"{at}.name", non_empty=True)
        if not _TOOL_NAME.match(name):
            raise invalid(f"{at}.name", "up to 64 letters, digits, '_' or '-'")
        function: dict[str, Any] = {"name": name}
        if tool.get("description") is not None:
            function["description"] = expect_string(tool["description"], f"{at}.description")
        function["parameters"] = expect_object(_required(tool, "input_schema", f"{at}."), f"{at}.input_schema")
        names.add(name)
        tools.append({"type": "function", "function": function})
    if tools:
        chat["tools"] = tools
    return names


def _tool_choice(value: Any, names: set[str], chat: dict[str, Any]) -> None:
    if value is None:
        return
    expect_object(value, "tool_choice")
    kind = value.get("type")
    if kind == "tool":
        name = expect_string(value.get("name"), "tool_choice.name", non_empty=True)
        if name not in names:
            raise invalid("tool_choice.name", f"no tool named {name!r} in tools")
        choice: Any = {"type": "function", "function": {"name": name}}
    elif isinstance(kind, str) and kind in _TOOL_CHOICES:
        choice = _TOOL_CHOICES[kind]
    else:
        raise invalid("tool_choice.type", f"expected auto, any, tool or none, got {kind!r}")
    disable_parallel = value.get("disable_parallel_tool_use")
    if disable_parallel is not None and not isinstance(disable_parallel, bool):
        raise invalid("tool_choice.disable_parallel_tool_use", f"expected a boolean, got {json_type(disable_parallel)}")
    if not names:  # OpenAI-shaped engines refuse tool_choice without tools
        return
    chat["tool_choice"] = choice
    if disable_parallel:
        chat["parallel_tool_calls"] = False


def _thinking(value: Any, max_tokens: int | None, chat: dict[str, Any]) -> None:
    """``enabled`` asks for reasoning as ``reasoning_effort`` (low under 4k budget tokens, medium under
    16k, else high). ``disabled`` and ``adaptive`` leave the engine its default: ``reasoning_effort:
    none`` is not a value every engine accepts (vLLM refuses it), and a model that always reasons does so
    whatever it is told; its reasoning still comes back as thinking blocks."""
    if value is None:
        return
    expect_object(value, "thinking")
    kind = value.get("type")
    if kind == "enabled":
        if value.get("budget_tokens") is None:
            raise _missing("thinking.budget_tokens")
        budget = _integer(value["budget_tokens"], "thinking.budget_tokens", _MIN_THINKING_BUDGET)
        if max_tokens is not None and budget >= max_tokens:
            raise invalid("thinking.budget_tokens", f"must be less than max_tokens ({max_tokens}), got {budget}")
        chat.setdefault("reasoning_effort", "low" if budget < 4096 else "medium" if budget < 16384 else "high")
    elif kind not in ("disabled", "adaptive", "between_tools"):
        raise invalid("thinking.type", f"expected enabled, disabled or adaptive, got {kind!r}")


def _output_config(body: dict[str, Any], chat: dict[str, Any]) -> None:
    """``output_config`` (``effort``, ``format``) and the beta's top-level ``output_format``."""
    config = body.get("output_config")
    formats: list[tuple[Any, str]] = []
    if config is not None:
        expect_object(config, "output_config")
        effort = config.get("effort")
        if effort is not None:
            if not isinstance(effort, str) or effort not in _EFFORTS:
                raise invalid("output_config.effort", f"expected one of {', '.join(_EFFORTS)}, got {effort!r}")
            chat["reasoning_effort"] = _EFFORTS[effort]
        formats.append((config.get("format"), "output_config.format"))
    formats.append((body.get("output_format"), "output_format"))
    for value, param in formats:
        if value is None:
            continue
        expect_object(value, param)
        if value.get("type") != "json_schema":
            raise invalid(f"{param}.type", f"expected 'json_schema', got {value.get('type')!r}")
        if value.get("schema") is None:
            raise _missing(f"{param}.schema")
        schema = expect_object(value["schema"], f"{param}.schema")
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}


# -- response: chat → Message ---------------------------------------------------------------------


def _tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as ``input``. Arguments that are not a JSON object become ``{}``:
    ``input`` is always an object, and the client's check of the tool's schema then tells the model."""
    if isinstance(arguments, dict):
        return arguments
    if isinstance(arguments, str) and arguments.strip():
        try:
            parsed = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


def stop_reason(finish_reason: str | None, *, stop_string: Any = None, called_tools: bool = False) -> str:
    """Anthropic's ``stop_reason`` for OpenAI's ``finish_reason`` (``stop_string`` is the matched stop
    sequence vLLM reports as ``choices[].stop_reason``; tool calls ended by ``stop``, as Ollama ends them,
    are ``tool_use``)."""
    if finish_reason in ("tool_calls", "function_call"):
        return "tool_use"
    if finish_reason == "length":
        return "max_tokens"
    if finish_reason == "content_filter":
        return "refusal"
    if called_tools:
        return "tool_use"
    if isinstance(stop_string, str):
        return "stop_sequence"
    return "end_turn"


def _usage(usage: Any, *, input_tokens: int = 0, output_tokens: int = 0) -> dict[str, int]:
    if isinstance(usage, dict):
        input_tokens = usage.get("prompt_tokens") or input_tokens
        output_tokens = usage.get("completion_tokens") or output_tokens
    # Prompt caches of self-hosted engines are not billed apart: the cache fields are always 0.
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _reasoning(message: dict[str, Any]) -> str | None:
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) and value else None


def from_chat(result: dict[str, Any], model: str, *, id: str | None = None) -> dict[str, Any]:
    """A chat completion as an Anthropic Message, named ``model`` (the name the client asked for)."""
    choices = result.get("choices") or [{}]
    choice = choices[0]
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    reasoning = _reasoning(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text", "") for p in text if isinstance(p, dict) and p.get("type") == "text")
    if text:
        content.append({"type": "text", "text": text, "citations": None})
    calls = [c for c in message.get("tool_calls") or [] if isinstance(c, dict)]
    for call in calls:
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or tool_use_id(),
                "name": function.get("name", ""),
                "input": _tool_input(function.get("arguments")),
            }
        )
    if not content:  # clients read content[0]: an empty answer is one empty text block
        content.append({"type": "text", "text": "", "citations": None})
    reason = stop_reason(choice.get("finish_reason"), stop_string=choice.get("stop_reason"), called_tools=bool(calls))
    return {
        "id": id or message_id(),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": choice.get("stop_reason") if reason == "stop_sequence" else None,
        "usage": _usage(result.get("usage")),
    }


# -- streaming: chat chunks → Messages events -----------------------------------------------------


@dataclass(slots=True)
class _ToolCall:
    """One streamed tool call; its block opens once its name is known (arguments wait until then)."""

    id: str | None = None
    name: str | None = None
    block: int | None = None
    pending: list[str] = field(default_factory=list)


class MessagesStream:
    """Turns the OpenAI chunks of one stream into Anthropic's events, in Anthropic's order:
    ``message_start``, ``ping``, then per block ``content_block_start`` / ``_delta``s / ``_stop`` (thinking,
    text, one tool_use per tool call), then ``message_delta`` (stop reason, usage) and ``message_stop``.

    ``start()`` may be called before the first chunk (the client sees the message begin at once);
    ``feed()`` calls it if not; ``finish()`` closes the message when the upstream stream ends.
    ``input_tokens`` is the prompt's count if known before the engine reports it (message_start carries
    it); the engine's final usage, when it comes, is what ``message_delta`` reports.
    """

    def __init__(self, model: str, *, input_tokens: int = 0, id: str | None = None) -> None:
        self.model = model
        self.id = id or message_id()
        self.input_tokens = input_tokens
        self.output_tokens = 0
        self.finish_reason: str | None = None
        self.stop_string: str | None = None
        self._started = False
        self._finished = False
        self._blocks = 0  # blocks opened so far: the next block's index
        self._open: tuple[str, int | None] | None = None  # ("text" | "thinking" | "tool", tool index)
        self._tools: dict[int, _ToolCall] = {}

    @property
    def stop_reason(self) -> str:
        return stop_reason(self.finish_reason, stop_string=self.stop_string, called_tools=bool(self._tools))

    def start(self) -> list[Event]:
        if self._started:
            return []
        self._started = True
        message = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": _usage(None, input_tokens=self.input_tokens),
        }  # fmt: skip
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def feed(self, chunk: dict[str, Any] | StreamEvent) -> list[Event]:
        if self._finished:
            return []
        data = chunk.data if isinstance(chunk, StreamEvent) else chunk
        events = self.start()
        if isinstance(data.get("usage"), dict):
            usage = _usage(data["usage"], input_tokens=self.input_tokens, output_tokens=self.output_tokens)
            self.input_tokens, self.output_tokens = usage["input_tokens"], usage["output_tokens"]
        for choice in data.get("choices") or []:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            reasoning = _reasoning(delta)
            if reasoning:
                events += self._into("thinking")
                events.append(self._delta({"type": "thinking_delta", "thinking": reasoning}))
            if isinstance(delta.get("content"), str) and delta["content"]:
                events += self._into("text")
                events.append(self._delta({"type": "text_delta", "text": delta["content"]}))
            for position, call in enumerate(delta.get("tool_calls") or []):
                if isinstance(call, dict):
                    events += self._tool_delta(call, position)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            if isinstance(choice.get("stop_reason"), str):
                self.stop_string = choice["stop_reason"]
        return events

    def finish(self) -> list[Event]:
        """The closing events; none if already finished."""
        if self._finished:
            return []
        events = self.start()
        self._finished = True
        for index, call in self._tools.items():  # a call whose name never came still reaches the client
            if call.block is None:
                call.name = call.name or ""
                events += self._open_tool(index, call)
        events += self._close()
        reason = self.stop_reason
        delta = {"stop_reason": reason, "stop_sequence": self.stop_string if reason == "stop_sequence" else None}
        usage = {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens}
        events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _delta(self, delta: dict[str, Any], index: int | None = None) -> Event:
        at = self._blocks - 1 if index is None else index
        return "content_block_delta", {"type": "content_block_delta", "index": at, "delta": delta}

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"type": "content_block_stop", "index": self._blocks - 1})]

    def _begin(self, block: dict[str, Any], kind: str, tool: int | None = None) -> list[Event]:
        events = self._close()
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": self._blocks, "content_block": block})
        )
        self._blocks += 1
        self._open = (kind, tool)
        return events

    def _into(self, kind: str) -> list[Event]:
        """Opens a text or thinking block unless that kind is the one open."""
        if self._open is not None and self._open[0] == kind:
            return []
        block = (
            {"type": "text", "text": ""} if kind == "text" else {"type": "thinking", "thinking": "", "signature": ""}
        )
        return self._begin(block, kind)

    def _open_tool(self, index: int, call: _ToolCall) -> list[Event]:
        call.id = call.id or tool_use_id()
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        events = self._begin(block, "tool", index)
        call.block = self._blocks - 1
        pending = "".join(call.pending)
        call.pending.clear()
        if pending:
            events.append(self._delta({"type": "input_json_delta", "partial_json": pending}))
        return events

    def _tool_delta(self, delta: dict[str, Any], position: int) -> list[Event]:
        """An OpenAI engine streams a call as a first delta (id, name) and argument fragments; Ollama sends
        the whole call at once. Either way one tool_use block per call index."""
        index = delta.get("index", position)
        call = self._tools.setdefault(index, _ToolCall())
        call.id = call.id or delta.get("id")
        function = delta.get("function") or {}
        call.name = call.name or function.get("name") or None
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # engines that send parsed arguments
            arguments = orjson.dumps(arguments).decode()
        fragment = arguments if isinstance(arguments, str) else ""
        if call.block is None:
            if fragment:
                call.pending.append(fragment)
            return self._open_tool(index, call) if call.name else []
        if not fragment:
            return []
        # A fragment of a call whose block is closed (calls interleaved) still names that block's index.
        return [self._delta({"type": "input_json_delta", "partial_json": fragment}, call.block)]


def stream_error(exc: BaseException) -> Event:
    """The ``error`` event a stream ends with when it fails after it began (the SDK raises it)."""
    if isinstance(exc, APIError):
        return "error", error_body(exc.status_code, exc.message)
    return "error", error_body(500, "the gateway failed while streaming the answer")


def sse(event: Event) -> bytes:
    """One event as Server-Sent Events bytes."""
    name, data = event
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


# -- errors and models ----------------------------------------------------------------------------


def error_type(status: int) -> str:
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "invalid_request_error" if status < 500 else "api_error"


def anthropic_status(status: int) -> int:
    """The status Anthropic answers with: an overload (503, no backend free) is its 529."""
    return 529 if status == 503 else status


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_response(exc: APIError) -> tuple[int, dict[str, Any]]:
    """An APIError as Anthropic's status and body (its headers, e.g. ``retry-after``, are the route's)."""
    return anthropic_status(exc.status_code), error_body(exc.status_code, exc.message)


def models_page(
    models: Iterable[str],
    *,
    created_at: str = EPOCH,
    limit: int = 20,
    after_id: str | None = None,
    before_id: str | None = None,
) -> dict[str, Any]:
    """``GET /v1/models`` in Anthropic's shape (a page of ``limit`` after ``after_id`` / before ``before_id``)."""
    names = list(models)
    if not 1 <= limit <= 1000:
        raise invalid("limit", f"must be between 1 and 1000, got {limit}")
    start, end = 0, len(names)
    if after_id is not None:
        start = names.index(after_id) + 1 if after_id in names else len(names)
    if before_id is not None:
        end = names.index(before_id) if before_id in names else 0
        start = max(start, end - limit)
    page = names[start:end][:limit]
    more = (start + len(page) < end) if before_id is None else start > 0
    data = [{"type": "model", "id": n, "display_name": n, "created_at": created_at} for n in page]
    return {
        "data": data,
        "has_more": more,
        "first_id": page[0] if page else None,
        "last_id": page[-1] if page else None,
    }
