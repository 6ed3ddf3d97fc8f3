"""``POST /generate``: the single-VPS shortcut, ``{"prompt", "max_tokens"}`` → ``{"response"}``."""

from __future__ import annotations

from fastapi import APIRouter, Request

from inferhub.api import inference, validation
from inferhub.api._openapi import body_schema
from inferhub.api.context import authenticate, context_of, pick_default_chat_model
from inferhub.api.responses import ORJSONResponse
from inferhub.errors import InvalidRequest

router = APIRouter(tags=["Shortcut"])


@router.post("/generate", openapi_extra=body_schema("GenerateRequest"))
@inference.metered("/generate")
async def generate(request: Request):
    authenticate(request)
    body = await inference.read_body(request)
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("prompt: expected a non-empty string", param="prompt", code="invalid_value")
    validation.optional_positive_int(body, "max_tokens")
    validation.optional_number(body, "temperature", 0, 2)
    context = context_of(request)
    model = validation.require_model(body) if body.get("model") not in (None, "") else pick_default_chat_model(context)
    messages = []
    if isinstance(body.get("system"), str):
        messages.append({"role": "system", "content": body["system"]})
    messages.append({"role": "user", "content": prompt})
    chat = {"model": model, "messages": messages, "max_tokens": body.get("max_tokens", 256)}
    if body.get("temperature") is not None:
        chat["temperature"] = body["temperature"]
    answer = await inference.run(request, "chat", chat, endpoint="/generate")
    result, headers = answer.body, answer.headers
    choice = result["choices"][0]
    return ORJSONResponse(
        {
            "response": (choice.get("message") or {}).get("content") or "",
            "model": result.get("model", model),
            "finish_reason": choice.get("finish_reason"),
            "usage": result.get("usage"),
        },
        headers=headers,
    )
