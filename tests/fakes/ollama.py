"""Fake Ollama server, following Ollama's documented REST API (ollama/ollama ``docs/api.md``).

Routes: ``POST /api/chat``, ``POST /api/generate``, ``POST /api/embed``, ``POST /api/embeddings`` (legacy),
``GET /api/tags``, ``POST /api/show``, ``GET /api/ps``, ``POST /api/pull``, ``GET /api/version`` and ``GET /``
("Ollama is running"). Streaming is the default (``"stream": false`` turns it off) and streams NDJSON
(``application/x-ndjson``), one object per line; the last object has ``"done": true``, ``done_reason``
and the timing/count statistics (durations in nanoseconds). Unknown models get 404
``{"error": "model \\"x\\" not found, try pulling it first"}``.

The model is deterministic: the reply to the last user message (or ``prompt``) is ``"echo: <text>"``
(or ``reply(text)``), ``{"echo": "<text>"}`` when ``format`` is set; with ``think`` the message first
carries ``thinking`` text ``"Let me think about: <text>"``. Word tokens are streamed one per chunk.
``options.num_predict`` caps the tokens (thinking + content) and gives ``done_reason: "length"``;
``options.stop`` cuts the content. ``eval_count`` is the number of tokens emitted and
``prompt_eval_count`` the number of whitespace words in all message contents (or system + prompt).
Embeddings are SHA-256-derived vectors: ``/api/embed`` returns them L2-normalised (as Ollama does),
legacy ``/api/embeddings`` returns them unnormalised. Test knobs live on ``app.state`` (see ``_common``).

``/api/pull`` streams the documented progress lines (``pulling manifest``, ``downloading <digest>`` with
``total``/``completed`` for two layers, ``verifying sha256 digest``, ``writing manifest``, ``success``; with
``"stream": false`` only ``{"status": "success"}``) and adds the model to the catalog. ``app.state.pullable``
(``None``: any name) limits what the "registry" has; any other name gets, as Ollama does, an
``{"error": "pull model manifest: file does not exist"}`` line (a 500 when not streaming).
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ._common import (
    apply_stop,
    count_words,
    dumps,
    early_failure,
    hash_embedding,
    init_state,
    json_response,
    l2_normalize,
    last_user_text,
    record,
    respond,
    take_fail_mode,
    text_of,
    tokens,
)

_EMBED_HINTS = ("embed", "minilm", "bge", "e5-", "gte-")


@dataclass(frozen=True)
class _Model:
    name: str
    family: str
    parameter_size: str
    capabilities: tuple[str, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()

    @property
    def size(self) -> int:
        return 1_000_000_000 + int(self.digest[:6], 16)

    def details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": self.parameter_size,
            "quantization_level": "Q4_K_M",
        }


def _normalize(name: str) -> str:
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _make_model(name: str, thinking: bool) -> _Model:
    base, _, tag = name.partition(":")
    short = base.rsplit("/", 1)[-1].lower()
    if any(h in short for h in _EMBED_HINTS):
        return _Model(name, "bert", "137M", ("embedding",))
    family = "".join(c for c in short.split(".")[0] if c.isalpha()) or "llama"
    head = tag.split("-")[0]
    try:
        size = f"{float(head[:-1]):.1f}B" if head[-1:] in ("b", "B") else "8.0B"
    except ValueError:
        size = "8.0B"
    caps = ("completion", "tools", "thinking") if thinking else ("completion", "tools")
    return _Model(name, family, size, caps)


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _err(message: str, status: int) -> Response:
    return json_response({"error": message}, status)


def _not_found(name: str) -> Response:
    return _err(f"model {json.dumps(name)} not found, try pulling it first", 404)


def _stats(prompt_count: int, eval_count: int) -> dict[str, int]:
    load, prompt_dur, eval_dur = 1_000_000, prompt_count * 100_000, eval_count * 1_000_000
    return {
        "total_duration": load + prompt_dur + eval_dur + 100_000,
        "load_duration": load,
        "prompt_eval_count": prompt_count,
        "prompt_eval_duration": prompt_dur,
        "eval_count": eval_count,
        "eval_duration": eval_dur,
    }


def _limit(thinking: str, content: str, options: dict[str, Any]) -> tuple[list[str], list[str], str]:
    """Token lists for thinking and content, truncated to ``num_predict``; plus the done_reason."""
    think_toks, content_toks = tokens(thinking), tokens(content)
    num_predict = options.get("num_predict")
    if isinstance(num_predict, int) and num_predict >= 0 and len(think_toks) + len(content_toks) > num_predict:
        content_toks = content_toks[: max(0, num_predict - len(think_toks))]
        return think_toks[:num_predict], content_toks, "length"
    return think_toks, content_toks, "stop"


def create_fake_ollama_app(
    models: Sequence[str] = ("llama3.1:8b",),
    *,
    embedding_dim: int = 8,
    version: str = "0.12.6",
    thinking_models: Sequence[str] | None = None,
    reply: Callable[[str], str] | None = None,
) -> Starlette:
    """Build the fake Ollama ASGI app.

    ``models`` are the locally "pulled" models (a name without a tag means ``:latest``; names that look
    like embedding models, e.g. ``nomic-embed-text``, only support embeddings). ``thinking_models``
    limits which models accept ``think`` (``None``: all chat models). ``reply`` maps the last user text
    to the answer (default ``"echo: " + text``).
    """
    thinkers = None if thinking_models is None else {_normalize(m) for m in thinking_models}
    catalog = {_normalize(m): _make_model(_normalize(m), thinkers is None or _normalize(m) in thinkers) for m in models}
    answer = reply or (lambda text: f"echo: {text}")
    loaded: dict[str, datetime] = {}

    def lookup(body: dict[str, Any], key: str = "model") -> tuple[str, _Model | None]:
        name = body.get(key) or ""
        model = catalog.get(_normalize(name)) if name else None
        if model is not None:
            loaded[model.name] = datetime.now(UTC) + timedelta(minutes=5)
        return name, model

    async def prologue(request: Request) -> tuple[dict[str, Any], str | None, Response | None]:
        body, ok = await record(request)
        mode = take_fail_mode(request)
        failure = await early_failure(request, mode, {"error": "fake ollama: internal server error"})
        if failure is not None:
            return {}, mode, failure
        if request.method == "POST" and (not ok or not isinstance(body, dict)):
            return {}, mode, _err("invalid character in request body: expected a JSON object", 400)
        return body if isinstance(body, dict) else {}, mode, None

    async def generate_like(request: Request, chat: bool) -> Response:
        body, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        name, model = lookup(body)
        if not name:
            return _err("model is required", 400)
        if model is None:
            return _not_found(name)
        messages = body.get("messages") or []
        prompt = body.get("prompt") or ""
        if (chat and not messages) or (not chat and not prompt and not body.get("images")):
            reason = "unload" if body.get("keep_alive") in (0, "0", "0s") else "load"
            out: dict[str, Any] = {"model": name, "created_at": _now()}
            out.update({"message": {"role": "assistant", "content": ""}} if chat else {"response": ""})
            return json_response({**out, "done_reason": reason, "done": True})
        if "completion" not in model.capabilities:
            return _err(f'"{name}" does not support {"chat" if chat else "generate"}', 400)
        think = body.get("think") not in (None, False)
        if think and "thinking" not in model.capabilities:
            return _err(f'"{name}" does not support thinking', 400)
        if chat:
            user_text = last_user_text(messages)
            prompt_count = sum(count_words(text_of(m.get("content"))) for m in messages if isinstance(m, dict))
        else:
            user_text = prompt
            system = "" if body.get("raw") else body.get("system") or ""
            prompt_count = count_words(system) + count_words(prompt)
        options = body.get("options") or {}
        content = json.dumps({"echo": user_text}) if body.get("format") else answer(user_text)
        content, _ = apply_stop(content, options.get("stop"))
        thinking = f"Let me think about: {user_text}" if think else ""
        think_toks, content_toks, reason = _limit(thinking, content, options)
        final: dict[str, Any] = {"done_reason": reason, "done": True}
        final.update(_stats(prompt_count, len(think_toks) + len(content_toks)))
        if not chat and not body.get("raw"):
            final["context"] = list(range(1, prompt_count + len(think_toks) + len(content_toks) + 1))

        def piece(text: str, thought: str | None) -> dict[str, Any]:
            if chat:
                msg: dict[str, Any] = {"role": "assistant", "content": text}
                if thought is not None:
                    msg["thinking"] = thought
                return {"model": name, "created_at": _now(), "message": msg}
            resp = {"model": name, "created_at": _now(), "response": text}
            return resp if thought is None else {**resp, "thinking": thought}

        if body.get("stream", True) is False:
            whole = piece("".join(content_toks), "".join(think_toks) if think else None)
            return respond(request, mode, obj={**whole, **final})
        lines = [{**piece("", t), "done": False} for t in think_toks]
        lines += [{**piece(t, None), "done": False} for t in content_toks]
        lines.append({**piece("", None), **final})
        return respond(request, mode, chunks=[dumps(line) + b"\n" for line in lines])

    async def chat(request: Request) -> Response:
        return await generate_like(request, chat=True)

    async def generate(request: Request) -> Response:
        return await generate_like(request, chat=False)

    async def embed(request: Request) -> Response:
        body, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        name, model = lookup(body)
        if not name:
            return _err("model is required", 400)
        if model is None:
            return _not_found(name)
        raw = body.get("input")
        inputs = [] if raw is None else [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(s, str) for s in inputs):
            return _err("invalid input type", 400)
        dims = body.get("dimensions")
        vectors = [hash_embedding(text, embedding_dim) for text in inputs]
        if isinstance(dims, int) and 0 < dims < embedding_dim:
            vectors = [l2_normalize(v[:dims]) for v in vectors]
        stats = _stats(sum(count_words(t) for t in inputs), 0)
        out: dict[str, Any] = {"model": name, "embeddings": vectors}
        out.update({k: stats[k] for k in ("total_duration", "load_duration", "prompt_eval_count")})
        return respond(request, mode, obj=out)

    async def embeddings_legacy(request: Request) -> Response:
        body, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        name, model = lookup(body)
        if not name:
            return _err("model is required", 400)
        if model is None:
            return _not_found(name)
        prompt = body.get("prompt") or ""
        vector = hash_embedding(prompt, embedding_dim, normalize=False) if prompt else []
        return respond(request, mode, obj={"embedding": vector})

    def entry(model: _Model) -> dict[str, Any]:
        return {"name": model.name, "model": model.name, "size": model.size, "digest": model.digest}

    async def tags(request: Request) -> Response:
        _, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        out = [{**entry(m), "modified_at": "2025-01-01T00:00:00Z", "details": m.details()} for m in catalog.values()]
        return respond(request, mode, obj={"models": out})

    async def ps(request: Request) -> Response:
        _, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        now = datetime.now(UTC)
        running = [
            {
                **entry(catalog[n]),
                "details": catalog[n].details(),
                "expires_at": exp.isoformat().replace("+00:00", "Z"),
                "size_vram": catalog[n].size,
                "context_length": 4096,
            }
            for n, exp in loaded.items()
            if exp > now
        ]
        return respond(request, mode, obj={"models": running})

    async def show(request: Request) -> Response:
        body, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        name, model = lookup(body, "model" if body.get("model") else "name")
        if model is None:
            return _err(f"model '{name}' not found", 404)
        arch = model.family
        return respond(
            request,
            mode,
            obj={
                "license": "",
                "modelfile": f'# Modelfile generated by "ollama show"\nFROM {model.name}\n',
                "parameters": 'stop                           "<|eot_id|>"',
                "template": "{{ .Prompt }}",
                "details": model.details(),
                "model_info": {
                    "general.architecture": arch,
                    "general.parameter_count": 8030261248,
                    f"{arch}.context_length": 131072,
                    f"{arch}.embedding_length": embedding_dim,
                },
                "capabilities": list(model.capabilities),
                "modified_at": "2025-01-01T00:00:00Z",
            },
        )

    async def pull(request: Request) -> Response:
        body, mode, failure = await prologue(request)
        if failure is not None:
            return failure
        name = body.get("model") or body.get("name") or ""
        if not name:
            return _err("model is required", 400)
        pullable = request.app.state.pullable
        streaming = body.get("stream", True) is not False
        if pullable is not None and _normalize(name) not in {_normalize(m) for m in pullable}:
            error = {"error": "pull model manifest: file does not exist"}
            if not streaming:
                return json_response(error, 500)
            return respond(request, mode, chunks=[dumps({"status": "pulling manifest"}) + b"\n", dumps(error) + b"\n"])
        model = _make_model(_normalize(name), thinkers is None or _normalize(name) in thinkers)
        catalog[model.name] = model
        if not streaming:
            return respond(request, mode, obj={"status": "success"})
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        for layer, total in ((f"{model.digest[:12]}-weights", model.size), (f"{model.digest[:12]}-params", 412)):
            digest = "sha256:" + hashlib.sha256(layer.encode()).hexdigest()
            for completed in (0, total // 4, total // 2, total):
                lines.append({"status": f"downloading {digest}", "digest": digest, "total": total,
                              "completed": completed})  # fmt: skip
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"}, {"status": "success"}]
        return respond(request, mode, chunks=[dumps(line) + b"\n" for line in lines])

    async def get_version(request: Request) -> Response:
        _, mode, failure = await prologue(request)
        return failure or respond(request, mode, obj={"version": version})

    async def root(request: Request) -> Response:
        _, _mode, failure = await prologue(request)
        return failure or PlainTextResponse("Ollama is running")

    app = Starlette(
        routes=[
            Route("/", root, methods=["GET", "HEAD"]),
            Route("/api/chat", chat, methods=["POST"]),
            Route("/api/generate", generate, methods=["POST"]),
            Route("/api/embed", embed, methods=["POST"]),
            Route("/api/embeddings", embeddings_legacy, methods=["POST"]),
            Route("/api/tags", tags, methods=["GET"]),
            Route("/api/ps", ps, methods=["GET"]),
            Route("/api/show", show, methods=["POST"]),
            Route("/api/pull", pull, methods=["POST"]),
            Route("/api/version", get_version, methods=["GET"]),
        ]
    )
    init_state(app)
    app.state.models = catalog
    app.state.pullable = None
    return app
