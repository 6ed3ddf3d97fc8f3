"""``POST /generate``: the single-VPS shortcut some users already have scripts for."""

from __future__ import annotations

import httpx


def test_generate_returns_a_response(http: httpx.Client) -> None:
    reply = http.post("/generate", json={"prompt": "What is two plus two?", "max_tokens": 12})
    assert reply.status_code == 200
    body = reply.json()
    assert body["response"].strip()
    assert body["model"] == "smollm2"
    assert body["usage"]["completion_tokens"] <= 12


def test_generate_honours_max_tokens(http: httpx.Client) -> None:
    body = http.post("/generate", json={"prompt": "Write a long story about a dragon.", "max_tokens": 3}).json()
    assert body["usage"]["completion_tokens"] <= 3
    assert body["finish_reason"] == "length"


def test_generate_requires_a_prompt(http: httpx.Client) -> None:
    reply = http.post("/generate", json={"max_tokens": 5})
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "prompt"


def test_generate_requires_a_key(inferhub) -> None:
    reply = httpx.post(f"{inferhub.url}/generate", json={"prompt": "hi"})
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "authentication_error"
