"""Bad input gets a precise 4xx with an OpenAI-style body (Ollama's shape on /api/*), never a 500."""

from __future__ import annotations

import asyncio
import base64
import time

import httpx
import pytest

from inferhub.api.context import AppContext
from inferhub.app import create_app


def _error(reply: httpx.Response, status: int) -> dict:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    assert "Traceback" not in reply.text
    return body["error"]


CHAT = "/v1/chat/completions"


def test_malformed_json(http: httpx.Client) -> None:
    error = _error(
        http.post(CHAT, content=b'{"model": "smollm2", "messages": [', headers={"content-type": "application/json"}),
        400,
    )
    assert error["code"] == "invalid_json"
    assert error["type"] == "invalid_request_error"


def test_body_that_is_not_an_object(http: httpx.Client) -> None:
    error = _error(http.post(CHAT, json=["smollm2"]), 400)
    assert "JSON object" in error["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": 42, "messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "smollm2"}, "messages"),
        ({"model": "smollm2", "messages": []}, "messages"),
        ({"model": "smollm2", "messages": "hello"}, "messages"),
        ({"model": "smollm2", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "smollm2", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "smollm2", "messages": [{"role": {"name": "user"}, "content": "hi"}]}, "messages[0].role"),
        ({"model": "smollm2", "messages": [{"role": ["user"], "content": "hi"}]}, "messages[0].role"),
        ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": "ten"}, "max_tokens"),
        ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, "max_tokens"),
        ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "temperature": 7}, "temperature"),
        ({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}, "stream"),
    ],
)
def test_wrong_fields_name_the_parameter(http: httpx.Client, body: dict, param: str) -> None:
    error = _error(http.post(CHAT, json=body), 400)
    assert error["param"] == param
    assert param.split("[")[0] in error["message"]


def test_unknown_model_is_404_model_not_found(http: httpx.Client) -> None:
    error = _error(http.post(CHAT, json={"model": "gpt-17", "messages": [{"role": "user", "content": "hi"}]}), 404)
    assert error["code"] == "model_not_found"
    assert "gpt-17" in error["message"]


def test_chat_to_an_embedding_model_is_refused(http: httpx.Client) -> None:
    body = {"model": "all-minilm-l6-v2", "messages": [{"role": "user", "content": "hi"}]}
    error = _error(http.post(CHAT, json=body), 400)
    assert error["code"] == "unsupported_operation"


def test_embedding_input_checks(http: httpx.Client) -> None:
    assert _error(http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": []}), 400)["param"] == "input"
    assert (
        _error(http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": [1, 2]}), 400)["param"]
        == "input"
    )
    assert _error(http.post("/v1/embeddings", json={"model": "all-minilm-l6-v2"}), 400)["param"] == "input"


def test_body_over_the_limit_is_413(http: httpx.Client) -> None:
    big = b'{"model": "smollm2", "messages": [{"role": "user", "content": "' + b"x" * (10 * 1024 * 1024) + b'"}]}'
    error = _error(http.post(CHAT, content=big, headers={"content-type": "application/json"}), 413)
    assert "limit" in error["message"]


def test_chunked_body_over_the_limit_is_413(http: httpx.Client) -> None:
    def chunks():
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    error = _error(http.post(CHAT, content=chunks(), headers={"content-type": "application/json"}), 413)
    assert error["code"] == "request_too_large"


def test_unknown_route_is_404(http: httpx.Client) -> None:
    error = _error(http.get("/v1/no-such-thing"), 404)
    assert "/v1/no-such-thing" in error["message"]


def test_wrong_method_is_405(http: httpx.Client) -> None:
    error = _error(http.get(CHAT), 405)
    assert error["code"] == "method_not_allowed"


def test_missing_key_is_401(inferhub) -> None:
    error = _error(httpx.post(f"{inferhub.url}{CHAT}", json={"model": "smollm2", "messages": []}), 401)
    assert error["code"] == "missing_api_key"


def test_wrong_key_is_401(inferhub) -> None:
    reply = httpx.get(f"{inferhub.url}/v1/models", headers={"Authorization": "Bearer ih-not-a-real-key"})
    assert _error(reply, 401)["code"] == "invalid_api_key"


def test_http_basic_with_the_key_as_password(inferhub) -> None:
    token = base64.b64encode(f"anyone:{inferhub.api_key}".encode()).decode()
    reply = httpx.get(f"{inferhub.url}/v1/models", headers={"Authorization": f"Basic {token}"})
    assert reply.status_code == 200
    assert httpx.get(f"{inferhub.url}/v1/models", auth=("user", inferhub.api_key)).status_code == 200
    assert httpx.get(f"{inferhub.url}/v1/models", auth=("user", "wrong")).status_code == 401


def test_ollama_routes_answer_errors_in_ollama_shape(inferhub, http: httpx.Client) -> None:
    reply = http.post("/api/chat", content=b"{nope", headers={"content-type": "application/json"})
    assert reply.status_code == 400
    assert isinstance(reply.json()["error"], str)
    reply = http.post("/api/chat", json={"model": "smollm2", "messages": []})
    assert reply.status_code == 400 and "messages" in reply.json()["error"]
    reply = http.post("/api/chat", json={"model": "smollm2", "messages": [{"role": {}, "content": "hi"}]})
    assert reply.status_code == 400 and "role" in reply.json()["error"]  # an object as the role: not a 500
    reply = http.post("/api/generate", json={"model": "nope", "prompt": "hi", "stream": False})
    assert reply.status_code == 404 and "nope" in reply.json()["error"]
    reply = httpx.post(f"{inferhub.url}/api/chat", json={"model": "smollm2", "messages": []})
    assert reply.status_code == 401 and isinstance(reply.json()["error"], str)


def test_request_id_is_returned_and_accepted(http: httpx.Client) -> None:
    assert len(http.get("/v1/models").headers["x-request-id"]) >= 16
    assert http.get("/v1/models", headers={"X-Request-ID": "trace-me-123"}).headers["x-request-id"] == "trace-me-123"


def test_health_without_a_key_shows_the_status_only(inferhub) -> None:
    reply = httpx.get(f"{inferhub.url}/health")
    assert reply.status_code == 200 and reply.json() == {"status": "healthy"}  # no ports, PIDs, URLs, errors
    assert httpx.get(f"{inferhub.url}/health", headers={"Authorization": "Bearer ih-wrong"}).status_code == 401


def test_health_with_an_inference_key_shows_the_status_only(inferhub, http: httpx.Client) -> None:
    tenant = http.post("/api/tenants", json={"name": "health-check-team"}).json()
    key = http.post(f"/api/tenants/{tenant['id']}/keys", json={"name": "health", "scopes": ["inference"]}).json()
    auth = {"Authorization": f"Bearer {key['key']}"}
    deadline = time.monotonic() + 10
    while (reply := httpx.get(f"{inferhub.url}/health", headers=auth)).status_code == 401:
        assert time.monotonic() < deadline, "the new key never reached the process (NOTIFY)"
        time.sleep(0.05)
    assert reply.status_code == 200 and reply.json() == {"status": "healthy"}


def test_health_with_an_admin_key_reports_components(inferhub) -> None:
    health = httpx.get(f"{inferhub.url}/health", headers=inferhub.headers).json()
    assert health["status"] == "healthy"
    assert health["components"]["database"]["status"] == "healthy"
    assert health["components"]["local_chat_model"]["status"] == "healthy"
    assert health["components"]["embedding_model"]["dimensions"] == 384
    assert {b["model"] for b in health["backends"]} >= {"smollm2", "all-minilm-l6-v2"}


def test_openapi_docs_are_served(inferhub) -> None:
    assert httpx.get(f"{inferhub.url}/docs").status_code == 200
    spec = httpx.get(f"{inferhub.url}/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"]
    schema = spec["paths"]["/v1/chat/completions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "messages" in schema["properties"]
    # The document says what validation checks: tool messages and calls, tools (schemathesis fuzzes from it).
    message = schema["properties"]["messages"]["items"]
    assert {"tool_call_id", "tool_calls", "name"} <= set(message["properties"]), message
    assert message["required"] == ["role"]  # an assistant message that calls tools has no content
    assert {"tools", "tool_choice"} <= set(schema["properties"])
    ollama = spec["paths"]["/api/chat"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "tool_name" in ollama["properties"]["messages"]["items"]["properties"]


def test_an_unhandled_error_is_an_openai_style_500_with_the_request_id() -> None:
    """A bug in a route: JSON in the OpenAI shape, no traceback, and the x-request-id of every response."""
    app = create_app(AppContext(gateway=None, registry=None, keys=None))  # type: ignore[arg-type]

    async def broken() -> None:
        raise RuntimeError("secret internals")

    app.add_api_route("/broken", broken)

    async def call(headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://inferhub") as client:
            return await client.get("/broken", headers=headers)

    reply = asyncio.run(call({}))
    error = _error(reply, 500)
    assert error["type"] == "server_error" and error["code"] == "internal_error"
    assert "secret internals" not in reply.text
    assert len(reply.headers["x-request-id"]) >= 16 and reply.headers["x-request-id"] in error["message"]
    given = asyncio.run(call({"X-Request-ID": "trace-the-crash"}))
    assert given.headers["x-request-id"] == "trace-the-crash" and "trace-the-crash" in given.json()["error"]["message"]
