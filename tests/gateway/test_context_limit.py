"""``max_tokens`` above the model's context is refused with a 400 naming the limit, not silently capped.

llama-cpp-python caps ``max_tokens`` at what is left of its context and says nothing. The embedded model
declares its context (``INFERHUB_LOCAL_CHAT_CONTEXT``, 2048 by default), so the gateway refuses more,
on every door: OpenAI chat and completions (``max_tokens``, ``max_completion_tokens``) and Ollama
(``options.num_predict``). Up to the context is still forwarded.
"""

from __future__ import annotations

import httpx
import ollama
import openai
import pytest

CONTEXT = 2048  # the embedded model's default context (settings.local_chat_context)
MESSAGES = [{"role": "user", "content": "Say hi."}]


def _error(http: httpx.Client, path: str, body: dict) -> dict:
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    return response.json()["error"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 1_000_000}, "max_tokens"),
        ("/v1/chat/completions", {"messages": MESSAGES, "max_completion_tokens": CONTEXT + 1}, "max_completion_tokens"),
        ("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": CONTEXT + 1, "stream": True}, "max_tokens"),
        ("/v1/completions", {"prompt": "One, two,", "max_tokens": 1_000_000}, "max_tokens"),
    ],
)
def test_max_tokens_above_the_context_is_a_400_naming_the_limit(http: httpx.Client, path, body, param) -> None:
    error = _error(http, path, {"model": "smollm2", **body})
    assert error["code"] == "max_tokens_too_large" and error["param"] == param, error
    assert str(CONTEXT) in error["message"], error


def test_the_openai_client_sees_the_limit(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        openai_client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=1_000_000)
    assert raised.value.code == "max_tokens_too_large" and str(CONTEXT) in raised.value.message


def test_ollama_num_predict_above_the_context_is_refused(ollama_client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as raised:
        ollama_client.chat(model="smollm2", messages=MESSAGES, options={"num_predict": 1_000_000})
    assert raised.value.status_code == 400 and str(CONTEXT) in raised.value.error


def test_max_tokens_up_to_the_context_is_forwarded(openai_client: openai.OpenAI) -> None:
    answer = openai_client.chat.completions.create(model="smollm2", messages=MESSAGES, max_tokens=CONTEXT)
    assert answer.choices[0].finish_reason in ("stop", "length")
