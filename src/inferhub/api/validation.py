"""Light checks of request bodies: enough to answer bad input with a precise 400, cheap enough for the hot path.

Bodies are parsed once with orjson and checked field by field rather than built
into pydantic models: the gateway forwards what it does not need to understand.
"""

from __future__ import annotations

from typing import Any

import orjson

from inferhub.api import _chat_checks as chat_checks
from inferhub.api.nul_bytes import NUL_MESSAGE, nul_path
from inferhub.errors import InvalidRequest, ModelNotFound
from inferhub.json_checks import invalid, json_type

MODEL_NAME_LENGTH = 200  # model names are varchar(200) in the registry and the usage table


def parse_json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        raise InvalidRequest("the request body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            f"could not parse the JSON body of the request: {exc.args[0] if exc.args else exc}",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"the request body must be a JSON object, not {json_type(data)}", code="invalid_json")
    if b"\\u0000" in raw:  # cheap test first: JSON can only carry a NUL byte escaped
        refuse_nul(data)
    return data


def refuse_nul(data: Any) -> None:
    """A 400 naming the field if a string or key holds a NUL byte, which PostgreSQL cannot store."""
    where = nul_path(data)
    if where is not None:
        raise invalid(where, NUL_MESSAGE)


def require_model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if model is None:
        raise InvalidRequest("model: this field is required", param="model", code="missing_required_parameter")
    if not isinstance(model, str) or not model.strip():
        raise invalid("model", f"expected a non-empty string, got {json_type(model)}")
    if len(model) > MODEL_NAME_LENGTH or "\x00" in model:
        # No model has such a name, and the usage record could not store it.
        raise ModelNotFound(f"The model {model[:MODEL_NAME_LENGTH]!r} does not exist", param="model")
    return model


def optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(name, f"expected a boolean, got {json_type(value)}")
    return value


def optional_positive_int(body: dict[str, Any], name: str) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(name, f"expected an integer, got {json_type(value)}")
    if value < 1:
        raise invalid(name, f"must be at least 1, got {value}")


def optional_number(body: dict[str, Any], name: str, low: float, high: float, *, param: str | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(param or name, f"expected a number, got {json_type(value)}")
    if not low <= value <= high:
        raise invalid(param or name, f"must be between {low:g} and {high:g}, got {value}")


def _check_sampling(body: dict[str, Any]) -> None:
    optional_bool(body, "stream")
    optional_positive_int(body, "max_tokens")
    optional_positive_int(body, "max_completion_tokens")
    optional_number(body, "temperature", 0, 2)
    optional_number(body, "top_p", 0, 1)
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise invalid("stream_options", f"expected an object, got {json_type(stream_options)}")


def check_chat(body: dict[str, Any]) -> None:
    require_model(body)
    messages = body.get("messages")
    if messages is None:
        raise InvalidRequest("messages: this field is required", param="messages", code="missing_required_parameter")
    if not isinstance(messages, list):
        raise invalid("messages", f"expected an array of messages, got {json_type(messages)}")
    if not messages:
        raise invalid("messages", "must contain at least one message")
    chat_checks.check_openai_messages(messages)
    chat_checks.check_tools(body)
    _check_sampling(body)
    chat_checks.check_openai_options(body)


def check_completion(body: dict[str, Any]) -> None:
    require_model(body)
    prompt = body.get("prompt")
    if prompt is None:
        raise InvalidRequest("prompt: this field is required", param="prompt", code="missing_required_parameter")
    if not isinstance(prompt, str) and not (
        isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt)
    ):
        raise invalid("prompt", "expected a string or a non-empty array of strings")
    _check_sampling(body)
    chat_checks.check_openai_options(body)


def check_embeddings(body: dict[str, Any]) -> list[str]:
    require_model(body)
    value = body.get("input")
    if value is None:
        raise InvalidRequest("input: this field is required", param="input", code="missing_required_parameter")
    inputs = [value] if isinstance(value, str) else value
    if not isinstance(inputs, list) or not all(isinstance(item, str) for item in inputs):
        raise invalid("input", "expected a string or an array of strings")
    if not inputs:
        raise invalid("input", "must contain at least one string")
    if any(not item for item in inputs):
        raise invalid("input", "strings must not be empty")
    if len(inputs) > 2048:
        raise invalid("input", f"at most 2048 inputs per request, got {len(inputs)}")
    return inputs


def check_ollama_chat(body: dict[str, Any]) -> None:
    require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "expected a non-empty array of messages")
    chat_checks.check_ollama_messages(messages)
    chat_checks.check_tools(body)
    _check_ollama_common(body)


def check_ollama_generate(body: dict[str, Any]) -> None:
    require_model(body)
    prompt = body.get("prompt", "")
    if not isinstance(prompt, str):
        raise invalid("prompt", f"expected a string, got {json_type(prompt)}")
    _check_ollama_common(body)


def _check_ollama_common(body: dict[str, Any]) -> None:
    optional_bool(body, "stream")
    options = body.get("options")
    if options is not None and not isinstance(options, dict):
        raise invalid("options", f"expected an object, got {json_type(options)}")
    if options:
        optional_number(options, "temperature", 0, 2, param="options.temperature")
        num_predict = options.get("num_predict")
        if num_predict is not None and (isinstance(num_predict, bool) or not isinstance(num_predict, int)):
            raise invalid("options.num_predict", f"expected an integer, got {json_type(num_predict)}")
        chat_checks.check_ollama_options(options)
    chat_checks.check_ollama_format(body)
