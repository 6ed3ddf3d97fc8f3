"""Prompt tokens of the same request streamed and not, on the OpenAI and Ollama protocols.

The three requests of ``tests/tenancy/test_stream_metering.py`` (system + user, multi-turn, with tools),
sent to a running Inferhub through the official clients; prints a Markdown table. Every column of a row
must agree: a stream bills what the same request bills without streaming.

    python -m bench.stream_prompt_tokens --url http://127.0.0.1:8888 --key "$INFERHUB_API_KEY"
"""

from __future__ import annotations

import argparse
from typing import Any

import ollama
import openai

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in a few words."}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
REQUESTS: dict[str, dict[str, Any]] = {
    "system-user": {"messages": [SYSTEM, {"role": "user", "content": "Name one colour of the rainbow."}]},
    "multi-turn": {
        "messages": [
            SYSTEM,
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And of Italy?"},
        ]
    },
    "tools": {
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": [WEATHER_TOOL],
    },
}


def openai_usage(client: openai.OpenAI, model: str, request: dict[str, Any], *, stream: bool) -> tuple[int, int]:
    """(prompt, completion) tokens the OpenAI client is told."""
    common = {"model": model, "max_tokens": 8, "temperature": 0, **request}
    if not stream:
        usage = client.chat.completions.create(**common).usage
        return usage.prompt_tokens, usage.completion_tokens
    chunks = list(client.chat.completions.create(**common, stream=True, stream_options={"include_usage": True}))
    usage = chunks[-1].usage
    assert usage is not None and not chunks[-1].choices, "the last chunk carries the usage"
    return usage.prompt_tokens, usage.completion_tokens


def ollama_usage(client: ollama.Client, model: str, request: dict[str, Any], *, stream: bool) -> tuple[int, int]:
    """(prompt_eval_count, eval_count) the Ollama client is told."""
    common = {"model": model, "options": {"num_predict": 8, "temperature": 0}, **request}
    if not stream:
        answer = client.chat(**common)
        return answer.prompt_eval_count, answer.eval_count
    final = list(client.chat(**common, stream=True))[-1]
    assert final.done
    return final.prompt_eval_count, final.eval_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8888")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", default="smollm2")
    args = parser.parse_args()
    openai_client = openai.OpenAI(base_url=f"{args.url}/v1", api_key=args.key, max_retries=0, timeout=120)
    ollama_client = ollama.Client(host=args.url, headers={"Authorization": f"Bearer {args.key}"}, timeout=120)
    print("| request | OpenAI non-stream | OpenAI stream | Ollama non-stream | Ollama stream |")
    print("|---|---:|---:|---:|---:|")
    for name, request in REQUESTS.items():
        row = [
            openai_usage(openai_client, args.model, request, stream=False)[0],
            openai_usage(openai_client, args.model, request, stream=True)[0],
            ollama_usage(ollama_client, args.model, request, stream=False)[0],
            ollama_usage(ollama_client, args.model, request, stream=True)[0],
        ]
        print(f"| {name} | " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
