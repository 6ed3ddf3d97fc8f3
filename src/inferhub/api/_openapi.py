"""Request-body schemas for ``/docs``. Bodies are checked by ``validation``; these only document them."""

from __future__ import annotations

from typing import Any

_TOOL_CALL = {
    "type": "object",
    "required": ["id", "type", "function"],
    "properties": {
        "id": {"type": "string"},
        "type": {"type": "string", "enum": ["function"]},
        "function": {
            "type": "object",
            "required": ["name", "arguments"],
            "properties": {"name": {"type": "string"}, "arguments": {"type": "string", "description": "JSON text"}},
        },
    },
}
_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "description": "content is required, except in an assistant message that calls tools; a tool message needs "
    "tool_call_id (api/_chat_checks.py checks what the engines check)",
    "properties": {
        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant", "tool", "function"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "name": {"type": "string"},
        "tool_call_id": {"type": "string"},
        "tool_calls": {"type": "array", "items": _TOOL_CALL},
        "reasoning_content": {"type": "string"},
    },
}
_TOOLS = {
    "tools": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["type", "function"],
            "properties": {
                "type": {"type": "string", "enum": ["function"]},
                "function": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "parameters": {"type": "object"},
                    },
                },
            },
        },
    },
    "tool_choice": {"anyOf": [{"type": "string", "enum": ["none", "auto", "required"]}, {"type": "object"}]},
}
_RESPONSE_ITEM = {
    "type": "object",
    "description": "a message {role, content}, a function_call {call_id, name, arguments} or a "
    "function_call_output {call_id, output}",
    "properties": {
        "type": {"type": "string", "enum": ["message", "function_call", "function_call_output", "reasoning"]},
        "role": {"type": "string", "enum": ["user", "assistant", "system", "developer"]},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "call_id": {"type": "string"},
        "name": {"type": "string"},
        "arguments": {"type": "string", "description": "JSON text"},
        "output": {"type": "string"},
    },
}
_RESPONSE_TOOL = {
    "type": "object",
    "required": ["type", "name"],
    "properties": {
        "type": {"type": "string", "enum": ["function"]},
        "name": {"type": "string"},
        "description": {"type": "string"},
        "parameters": {"type": "object"},
        "strict": {"type": "boolean"},
    },
}
_OLLAMA_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string", "enum": ["system", "user", "assistant", "tool"]},
        "content": {"type": "string"},
        "images": {"type": "array", "items": {"type": "string", "description": "base64"}},
        "tool_calls": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "function": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "arguments": {"type": "object"}},
                    }
                },
            },
        },
        "tool_name": {"type": "string", "description": "the tool whose result this message carries"},
    },
}
_SAMPLING = {
    "stream": {"type": "boolean", "default": False},
    "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
    "max_tokens": {"type": "integer", "minimum": 1},
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "top_p": {"type": "number", "minimum": 0, "maximum": 1},
    "stop": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    "user": {"type": "string"},
}
_ANTHROPIC_BLOCK = {
    "type": "object",
    "required": ["type"],
    "description": "text, image (source base64 or url), tool_use (assistant), tool_result (user), thinking",
    "properties": {
        "type": {"type": "string", "enum": ["text", "image", "tool_use", "tool_result", "thinking"]},
        "text": {"type": "string"},
        "source": {"type": "object"},
        "id": {"type": "string"},
        "name": {"type": "string"},
        "input": {"type": "object"},
        "tool_use_id": {"type": "string"},
        "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
        "is_error": {"type": "boolean"},
    },
}
_ANTHROPIC_PROMPT = {
    "model": {"type": "string", "example": "smollm2"},
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "required": ["role", "content"],
            "properties": {
                "role": {"type": "string", "enum": ["user", "assistant"]},
                "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": _ANTHROPIC_BLOCK}]},
            },
        },
    },
    "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "object"}}]},
    "tools": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["name", "input_schema"],
            "properties": {
                "name": {"type": "string"},
                "description": {"type": "string"},
                "input_schema": {"type": "object"},
            },
        },
    },
    "tool_choice": {
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {"type": "string", "enum": ["auto", "any", "tool", "none"]},
            "name": {"type": "string"},
            "disable_parallel_tool_use": {"type": "boolean"},
        },
    },
    "thinking": {"type": "object", "description": "{type: enabled, budget_tokens} | {type: disabled}"},
}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "example": "smollm2"},
            "messages": {"type": "array", "minItems": 1, "items": _MESSAGE},
            **_SAMPLING,
            **_TOOLS,
        },
    },
    "MessagesRequest": {
        "type": "object",
        "required": ["model", "max_tokens", "messages"],
        "description": "The Anthropic Messages API (docs/protocols/anthropic-messages.md)",
        "properties": {
            **_ANTHROPIC_PROMPT,
            "max_tokens": {"type": "integer", "minimum": 1},
            "stream": {"type": "boolean", "default": False},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 0},
            "metadata": {"type": "object", "properties": {"user_id": {"type": "string"}}},
        },
    },
    "MessagesCountTokensRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": _ANTHROPIC_PROMPT,
    },
    "CompletionRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {"model": {"type": "string"}, "prompt": {"type": "string"}, **_SAMPLING},
    },
    "EmbeddingRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "example": "all-minilm-l6-v2"},
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        },
    },
    "OllamaChatRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "minItems": 1, "items": _OLLAMA_MESSAGE},
            "stream": {"type": "boolean", "default": True},
            "tools": _TOOLS["tools"],
            "options": {"type": "object"},
            "format": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        },
    },
    "OllamaGenerateRequest": {
        "type": "object",
        "required": ["model", "prompt"],
        "properties": {
            "model": {"type": "string"},
            "prompt": {"type": "string"},
            "system": {"type": "string"},
            "raw": {"type": "boolean"},
            "stream": {"type": "boolean", "default": True},
            "options": {"type": "object"},
        },
    },
    "OllamaEmbedRequest": {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string"},
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        },
    },
    "ResponseRequest": {
        "type": "object",
        "required": ["model", "input"],
        "description": "The OpenAI Responses API (docs/protocols/responses.md): translated to a chat request",
        "properties": {
            "model": {"type": "string", "example": "smollm2"},
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "items": _RESPONSE_ITEM}]},
            "instructions": {"type": "string"},
            "previous_response_id": {"type": "string"},
            "store": {"type": "boolean", "default": True},
            "background": {"type": "boolean", "default": False},
            "stream": {"type": "boolean", "default": False},
            "max_output_tokens": {"type": "integer", "minimum": 1},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "tools": {"type": "array", "items": _RESPONSE_TOOL},
            "tool_choice": {"anyOf": [{"type": "string", "enum": ["none", "auto", "required"]}, {"type": "object"}]},
            "parallel_tool_calls": {"type": "boolean"},
            "text": {"type": "object", "properties": {"format": {"type": "object"}}},
            "reasoning": {"type": "object", "properties": {"effort": {"type": "string"}}},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "user": {"type": "string"},
        },
    },
    "JobRequest": {
        "type": "object",
        "required": ["type", "body"],
        "properties": {
            "type": {"type": "string", "enum": ["chat.completions", "completions", "embeddings"]},
            "body": {"type": "object", "description": "the body of the synchronous endpoint"},
            "priority": {"type": "integer", "minimum": -10, "maximum": 10, "default": 0},
            "webhook_url": {"type": "string"},
            "metadata": {"type": "object"},
        },
    },
    "GenerateRequest": {
        "type": "object",
        "required": ["prompt"],
        "properties": {
            "prompt": {"type": "string"},
            "max_tokens": {"type": "integer", "minimum": 1, "default": 256},
            "model": {"type": "string", "description": "defaults to the local chat model"},
            "temperature": {"type": "number"},
            "system": {"type": "string"},
        },
    },
    "RagQueryRequest": {
        "type": "object",
        "required": ["collections", "query"],
        "properties": {
            "collections": {"type": "array", "minItems": 1, "items": {"type": "string"}},
            "query": {"type": "string"},
            "answer_mode": {
                "type": "string",
                "enum": ["generate", "extractive"],
                "default": "generate",
                "description": "generate: the model answers from the retrieved sources, citing them. extractive: "
                "no model is called; the answer is the retrieved passages, quoted and numbered like the "
                "citations (for a weak model such as the embedded SmolLM2-135M, or when only sources matter).",
            },
            "model": {"type": "string", "description": "defaults to the local chat model; unused when extractive"},
            "top_k": {"type": "integer", "minimum": 1, "maximum": 50, "default": 5},
            "filter": {"type": "object", "description": "metadata fields the documents must have"},
            "stream": {"type": "boolean", "default": False},
            "max_tokens": {"type": "integer", "minimum": 1, "default": 512},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        },
    },
}


def body_schema(name: str) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _SCHEMAS[name]}}}}
