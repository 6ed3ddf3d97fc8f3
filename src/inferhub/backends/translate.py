"""Translation between the OpenAI and Ollama protocols. Pure functions; no I/O.

Field mapping (Ollama docs/api.md ↔ OpenAI chat completions):
``options.num_predict`` ↔ ``max_tokens``; ``options.temperature/top_p/top_k/seed/stop`` ↔ the same
names; ``format: "json"`` ↔ ``response_format: {"type": "json_object"}``; ``message.thinking`` ↔
``message.reasoning_content`` (or vLLM's ``reasoning``); ``prompt_eval_count``/``eval_count`` ↔ ``usage``;
``done_reason`` ↔ ``finish_reason``.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

_OPTION_NAMES = ("temperature", "top_p", "top_k", "seed", "stop", "presence_penalty", "frequency_penalty")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def completion_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


# -- OpenAI request → Ollama request ------------------------------------------------------------


def _ollama_options(body: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in _OPTION_NAMES:
        if body.get(name) is not None:
            options[name] = body[name]
    if isinstance(options.get("stop"), str):
        options["stop"] = [options["stop"]]
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    if max_tokens is not None:
        options["num_predict"] = max_tokens
    return options


def _ollama_message(message: dict[str, Any]) -> dict[str, Any]:
    content = message.get("content")
    images: list[str] = []
    if isinstance(content, list):  # OpenAI content parts
        texts = []
        for part in content:
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url", "")
                if url.startswith("data:") and "," in url:
                    images.append(url.split(",", 1)[1])
        content = "\n".join(texts)
    out: dict[str, Any] = {"role": message.get("role", "user"), "content": content or ""}
    if images:
        out["images"] = images
    if message.get("reasoning_content"):
        out["thinking"] = message["reasoning_content"]
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {"function": {"name": c["function"]["name"], "arguments": _loads(c["function"].get("arguments"))}}
            for c in message["tool_calls"]
            if isinstance(c, dict) and "function" in c
        ]
    return out


def _loads(arguments: Any) -> Any:
    import orjson

    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
    return arguments or {}


def openai_chat_to_ollama(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    request: dict[str, Any] = {
        "model": model,
        "messages": [_ollama_message(m) for m in body["messages"]],
        "stream": stream,
        "options": _ollama_options(body),
    }
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object":
        request["format"] = "json"
    elif response_format.get("type") == "json_schema":
        request["format"] = (response_format.get("json_schema") or {}).get("schema", "json")
    if body.get("tools"):
        request["tools"] = body["tools"]
    if body.get("reasoning_effort") is not None:
        request["think"] = body["reasoning_effort"] != "none"
    return request


def openai_completion_to_ollama(body: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        prompt = "".join(str(p) for p in prompt)
    return {"model": model, "prompt": prompt, "raw": True, "stream": stream, "options": _ollama_options(body)}


# -- Ollama response → OpenAI response ----------------------------------------------------------


def _finish_reason(data: dict[str, Any]) -> str | None:
    if not data.get("done"):
        return None
    return "length" if data.get("done_reason") == "length" else "stop"


def _openai_tool_calls(calls: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    import orjson

    if not calls:
        return None
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {
                "name": c.get("function", {}).get("name", ""),
                "arguments": orjson.dumps(c.get("function", {}).get("arguments", {})).decode(),
            },
        }
        for c in calls
    ]


def ollama_chat_to_openai_response(data: dict[str, Any], model: str) -> dict[str, Any]:
    message = data.get("message") or {}
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content", "")}
    if message.get("thinking"):
        out_message["reasoning_content"] = message["thinking"]
    tool_calls = _openai_tool_calls(message.get("tool_calls"))
    if tool_calls:
        out_message["tool_calls"] = tool_calls
    finish = "tool_calls" if tool_calls else (_finish_reason(data) or "stop")
    return {
        "id": completion_id(),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": out_message, "finish_reason": finish, "logprobs": None}],
        "usage": usage(data.get("prompt_eval_count", 0) or 0, data.get("eval_count", 0) or 0),
    }


def ollama_chat_line_to_openai_chunk(
    data: dict[str, Any], *, chunk_id: str, created: int, model: str
) -> dict[str, Any]:
    message = data.get("message") or {}
    delta: dict[str, Any] = {}
    if message.get("thinking"):
        delta["reasoning_content"] = message["thinking"]
    if message.get("content"):
        delta["content"] = message["content"]
    tool_calls = _openai_tool_calls(message.get("tool_calls"))
    if tool_calls:
        delta["tool_calls"] = [{"index": i, **c} for i, c in enumerate(tool_calls)]
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": _finish_reason(data), "logprobs": None}],
    }


def ollama_generate_to_openai_completion(data: dict[str, Any], model: str) -> dict[str, Any]:
    return {
        "id": completion_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "text": data.get("response", ""), "finish_reason": _finish_reason(data) or "stop",
             "logprobs": None}
        ],
        "usage": usage(data.get("prompt_eval_count", 0) or 0, data.get("eval_count", 0) or 0),
    }  # fmt: skip


def ollama_generate_line_to_openai_chunk(
    data: dict[str, Any], *, chunk_id: str, created: int, model: str
) -> dict[str, Any]:
    return {
        "id": chunk_id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {"index": 0, "text": data.get("response", ""), "finish_reason": _finish_reason(data), "logprobs": None}
        ],
    }


def usage_chunk(chunk_id: str, created: int, model: str, obj: str, prompt: int, completion: int) -> dict:
    return {"id": chunk_id, "object": obj, "created": created, "model": model, "choices": [],
            "usage": usage(prompt, completion)}  # fmt: skip


# -- Ollama request → OpenAI request ------------------------------------------------------------


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.get("role", "user"), "content": message.get("content", "")}
    images = message.get("images")
    if images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": out["content"]}]
        parts += [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{img}"}} for img in images]
        out["content"] = parts
    if message.get("thinking"):
        out["reasoning_content"] = message["thinking"]
    if out["role"] == "tool":
        for name in ("tool_call_id", "tool_name"):
            if message.get(name):
                out[name] = message[name]
    tool_calls = _openai_tool_calls(message.get("tool_calls"))
    if tool_calls:
        out["tool_calls"] = tool_calls
    return out


def _openai_sampling(body: dict[str, Any]) -> dict[str, Any]:
    options = body.get("options") or {}
    out: dict[str, Any] = {}
    for name in _OPTION_NAMES:
        if options.get(name) is not None:
            out[name] = options[name]
    if options.get("num_predict") is not None and options["num_predict"] >= 0:
        out["max_tokens"] = options["num_predict"]
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt}}
    return out


def _link_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama matches a tool result to its call by order (or ``tool_name``); OpenAI engines need the call's
    ``tool_call_id``. Give each tool message the id of the call it answers (a fresh one if none is open)."""
    open_calls: list[dict[str, Any]] = []
    for message in messages:
        if message.get("tool_calls"):
            open_calls = list(message["tool_calls"])
        elif message["role"] == "tool":
            name = message.pop("tool_name", None)
            if message.get("tool_call_id"):
                continue
            call = next((c for c in open_calls if c["function"]["name"] == name), open_calls[0] if open_calls else None)
            if call is not None:
                open_calls.remove(call)
            message["tool_call_id"] = call["id"] if call else f"call_{uuid.uuid4().hex[:12]}"
    return messages


def ollama_chat_to_openai_request(body: dict[str, Any]) -> dict[str, Any]:
    messages = _link_tool_results([_openai_message(m) for m in body["messages"]])
    request = {"model": body["model"], "messages": messages}
    request.update(_openai_sampling(body))
    if body.get("tools"):
        request["tools"] = body["tools"]
    return request


def ollama_generate_to_openai_request(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Ollama applies the chat template unless ``raw``: so chat, or a plain completion when raw."""
    sampling = _openai_sampling(body)
    if body.get("raw"):
        return "completions", {"model": body["model"], "prompt": body.get("prompt", ""), **sampling}
    messages = []
    if body.get("system"):
        messages.append({"role": "system", "content": body["system"]})
    messages.append({"role": "user", "content": body.get("prompt", "")})
    return "chat", {"model": body["model"], "messages": messages, **sampling}


# -- OpenAI response → Ollama response ----------------------------------------------------------


def reasoning(message: dict[str, Any]) -> str | None:
    """The reasoning text of an OpenAI message or delta: vLLM >= 0.11 names it ``reasoning``."""
    return message.get("reasoning_content") or message.get("reasoning")


def _durations(elapsed_ns: int, prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "total_duration": elapsed_ns,
        "load_duration": 0,
        "prompt_eval_count": prompt_tokens,
        "prompt_eval_duration": 0,
        "eval_count": completion_tokens,
        "eval_duration": elapsed_ns,
    }


def _done_reason(finish_reason: str | None) -> str:
    return "length" if finish_reason == "length" else "stop"


def openai_to_ollama_chat_response(data: dict[str, Any], model: str, elapsed_ns: int) -> dict[str, Any]:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    out_message: dict[str, Any] = {"role": "assistant", "content": message.get("content") or ""}
    if reasoning(message):
        out_message["thinking"] = reasoning(message)
    if message.get("tool_calls"):
        out_message["tool_calls"] = [
            {"function": {"name": c["function"]["name"], "arguments": _loads(c["function"].get("arguments"))}}
            for c in message["tool_calls"]
        ]
    used = data.get("usage") or {}
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "message": out_message,
        "done": True,
        "done_reason": _done_reason(choice.get("finish_reason")),
        **_durations(elapsed_ns, used.get("prompt_tokens", 0), used.get("completion_tokens", 0)),
    }


def openai_to_ollama_generate_response(data: dict[str, Any], model: str, elapsed_ns: int) -> dict[str, Any]:
    choice = (data.get("choices") or [{}])[0]
    text = choice.get("text")
    message = choice.get("message") or {}
    out: dict[str, Any] = {
        "model": model,
        "created_at": now_rfc3339(),
        "response": text if text is not None else (message.get("content") or ""),
        "done": True,
        "done_reason": _done_reason(choice.get("finish_reason")),
    }
    if reasoning(message):
        out["thinking"] = reasoning(message)
    used = data.get("usage") or {}
    out.update(_durations(elapsed_ns, used.get("prompt_tokens", 0), used.get("completion_tokens", 0)))
    return out


def openai_chunk_to_ollama_line(chunk: dict[str, Any], model: str, *, generate: bool) -> dict[str, Any] | None:
    """One OpenAI stream chunk as an Ollama NDJSON line, or None if it carries no text.

    Tool-call fragments are not converted here: OpenAI engines stream a call's
    arguments in pieces, so they are collected by ``ToolCallAssembler``.
    """
    choices = chunk.get("choices") or []
    if not choices:
        return None
    choice = choices[0]
    delta = choice.get("delta") or {}
    content = delta.get("content") if "delta" in choice else choice.get("text")
    thinking = reasoning(delta)
    if not content and not thinking:
        return None
    line: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "done": False}
    if generate:
        line["response"] = content or ""
        if thinking:
            line["thinking"] = thinking
    else:
        message: dict[str, Any] = {"role": "assistant", "content": content or ""}
        if thinking:
            message["thinking"] = thinking
        line["message"] = message
    return line


class ToolCallAssembler:
    """Joins streamed OpenAI tool-call fragments (by ``index``) into whole Ollama tool calls."""

    def __init__(self) -> None:
        self._calls: dict[int, dict[str, str]] = {}

    def add(self, chunk: dict[str, Any]) -> None:
        for choice in chunk.get("choices") or []:
            for fragment in (choice.get("delta") or {}).get("tool_calls") or []:
                call = self._calls.setdefault(fragment.get("index", len(self._calls)), {"name": "", "arguments": ""})
                function = fragment.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""

    def take(self) -> list[dict[str, Any]]:
        """The calls collected so far, as Ollama ``tool_calls``; clears the collection."""
        calls = [
            {"function": {"name": c["name"], "arguments": _loads(c["arguments"])}}
            for _, c in sorted(self._calls.items())
        ]
        self._calls.clear()
        return calls


def ollama_tool_call_line(model: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "model": model,
        "created_at": now_rfc3339(),
        "message": {"role": "assistant", "content": "", "tool_calls": calls},
        "done": False,
    }


def ollama_final_line(
    model: str, *, generate: bool, finish_reason: str | None, elapsed_ns: int, prompt: int, completion: int
) -> dict[str, Any]:
    line: dict[str, Any] = {"model": model, "created_at": now_rfc3339()}
    if generate:
        line["response"] = ""
    else:
        line["message"] = {"role": "assistant", "content": ""}
    line.update({"done": True, "done_reason": _done_reason(finish_reason)})
    line.update(_durations(elapsed_ns, prompt, completion))
    return line


# -- Embeddings ---------------------------------------------------------------------------------


def embedding_inputs(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def openai_embeddings_response(vectors: list[list[float]], model: str, prompt_tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
