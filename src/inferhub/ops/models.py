"""``inferhub models pull`` and ``inferhub models warm``: get a model onto the engines before traffic.

``pull`` asks every Ollama node that serves MODEL (by its ``llm_backends`` rows; ``--all-nodes``: every
Ollama node) to download it (``POST /api/pull``, NDJSON progress), all nodes at once, one progress
line per node and step. ``warm`` loads MODEL on every backend that serves it: Ollama gets an empty
``/api/generate`` with ``keep_alive`` (loads without generating), OpenAI-compatible engines (vLLM,
llama.cpp, MLX) a one-token chat completion, TEI a one-word ``/embed``. Stored upstream credentials
are decrypted with the master key and sent, as the gateway does.

Backends are included whether enabled or not, so a new node can be prepared before it takes traffic
(add it ``--disabled``, pull, warm, enable).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from inferhub.gateway.registry import canonical_model_name, credential_headers
from inferhub.ops import OpsError

Echo = Callable[[str], None]
OPENAI_TYPES = ("openai", "vllm", "llamacpp", "mlx")


@dataclass(frozen=True, slots=True)
class Target:
    """One engine to act on: where, which name the engine knows the model by, and how to authenticate."""

    endpoint_url: str
    backend_type: str
    upstream_model: str
    backend_ids: tuple[int, ...]
    enabled: bool
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        ids = ",".join(str(i) for i in self.backend_ids) or "-"
        return f"{self.endpoint_url} (backend {ids}{'' if self.enabled else ', disabled'})"


def resolve_model(model: str, aliases: dict[str, str]) -> str:
    name = canonical_model_name(model)
    table = {canonical_model_name(a): canonical_model_name(m) for a, m in aliases.items()}
    return table.get(name, name)


def select_targets(
    records: list[Any],
    model: str,
    aliases: dict[str, str],
    *,
    types: tuple[str, ...],
    backend_model: str | None = None,
    all_nodes: bool = False,
    decrypt: Callable[[str], dict] | None = None,
) -> list[Target]:
    """The distinct engines (endpoint + upstream name) to act on, in backend id order."""
    wanted = resolve_model(model, aliases)
    chosen: dict[tuple[str, str], Target] = {}
    for record in sorted(records, key=lambda r: r.id):
        if record.backend_type not in types:
            continue
        serves = canonical_model_name(record.model_name) == wanted
        if not serves and not all_nodes:
            continue
        if backend_model:
            upstream = backend_model
        elif serves:
            upstream = record.upstream_model or record.model_name
        else:
            upstream = model  # --all-nodes: a node that does not serve it yet gets the name as given
        url = record.endpoint_url.rstrip("/")
        headers = _headers(record, decrypt)
        key = (url, upstream)
        previous = chosen.get(key)
        if previous is None:
            chosen[key] = Target(url, record.backend_type, upstream, (record.id,), record.enabled, headers)
        else:
            chosen[key] = Target(url, previous.backend_type, upstream, (*previous.backend_ids, record.id),
                                 previous.enabled or record.enabled, previous.headers or headers)  # fmt: skip
    return list(chosen.values())


def load_targets(
    db: Any,
    model: str,
    *,
    types: tuple[str, ...],
    backend_model: str | None = None,
    all_nodes: bool = False,
    secret_box: Callable[[], Any] | None = None,
) -> list[Target]:
    """Read the registry and pick the targets; the master key is loaded only if a target has credentials."""
    from inferhub.store.backends import BackendRepository
    from inferhub.store.routes import RouteRepository

    records = BackendRepository(db).list()
    aliases = RouteRepository(db).list_aliases()
    boxes: list[Any] = []

    def decrypt(token: str) -> dict:
        if not boxes:
            if secret_box is None:
                raise OpsError("stored credentials need the master key (INFERHUB_SECRET_KEY)")
            boxes.append(secret_box())
        return boxes[0].decrypt(token)

    targets = select_targets(records, model, aliases, types=types, backend_model=backend_model,
                             all_nodes=all_nodes, decrypt=decrypt)  # fmt: skip
    if not targets:
        kinds = "Ollama backend" if types == ("ollama",) else "backend"
        scope = "is registered" if all_nodes else f"serves {model!r}"
        hint = ", or use --all-nodes" if types == ("ollama",) and not all_nodes else ""
        raise OpsError(f"no {kinds} {scope}: see `inferhub backends list`, register one with "
                       f"`inferhub backends add MODEL URL --type TYPE`{hint}")  # fmt: skip
    return targets


def _headers(record: Any, decrypt: Callable[[str], dict] | None) -> dict[str, str]:
    if not record.credentials_encrypted:
        return {}
    if decrypt is None:
        raise OpsError(f"backend {record.id} has stored credentials but no master key is available")
    try:
        return dict(credential_headers(decrypt(record.credentials_encrypted)))
    except Exception as exc:
        raise OpsError(f"backend {record.id}: {exc} (set INFERHUB_SECRET_KEY to the key that encrypted it)") from None


# -- pull ------------------------------------------------------------------------------------------


def pull(targets: list[Target], echo: Echo = print, *, timeout: float = 600.0) -> int:
    """Pull on every target at once; one line per node and step; return the exit code."""
    results = asyncio.run(_pull_all(targets, echo, timeout))
    for target, error in zip(targets, results, strict=True):
        if error is None:
            echo(f"OK    {target.label}: {target.upstream_model} pulled")
        else:
            echo(f"FAIL  {target.label}: {error}")
    failed = sum(1 for e in results if e is not None)
    if not failed:
        echo("pulled on every node; a model no backend names yet becomes routable through discovery within "
             "INFERHUB_DISCOVERY_INTERVAL_SECONDS (30 s)")  # fmt: skip
    return 1 if failed else 0


async def _pull_all(targets: list[Target], echo: Echo, timeout: float) -> list[str | None]:
    # read: the longest silence between two progress lines (a big layer verifying can take a while).
    limits = httpx.Timeout(connect=10.0, read=timeout, write=30.0, pool=10.0)
    async with httpx.AsyncClient(timeout=limits) as client:
        return await asyncio.gather(*(_pull_one(client, t, echo) for t in targets))


async def _pull_one(client: httpx.AsyncClient, target: Target, echo: Echo) -> str | None:
    url = f"{target.endpoint_url}/api/pull"
    body = {"model": target.upstream_model, "stream": True}
    progress = _Progress(target.endpoint_url, echo)
    try:
        async with client.stream("POST", url, json=body, headers=target.headers) as response:
            if response.status_code >= 400:
                return f"{url} answered {response.status_code}: {_error_text(await response.aread())}"
            success = False
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError:
                    return f"{url} sent a line that is not JSON: {line[:100]!r}"
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    return f"{url}: {event['error']}"
                progress.show(event)
                success = success or event.get("status") == "success"
            return None if success else f"{url} ended the stream without 'success'"
    except httpx.ConnectError:
        return f"{url} refused the connection (or the host is unreachable)"
    except httpx.TimeoutException:
        return f"{url} went silent for longer than the timeout"
    except httpx.HTTPError as exc:
        return f"{url} failed: {type(exc).__name__}"


class _Progress:
    """Prints a step when it starts, and download progress at every further 10 %."""

    def __init__(self, node: str, echo: Echo) -> None:
        self.node = node
        self.echo = echo
        self.status: str | None = None
        self.decile = -1

    def show(self, event: dict[str, Any]) -> None:
        status = re.sub(r"(sha256[:-][0-9a-f]{12})[0-9a-f]{52}", r"\1…", str(event.get("status", "")))
        total, completed = event.get("total"), event.get("completed")
        if status != self.status:
            self.status, self.decile = status, -1
            if not total:
                self.echo(f"[{self.node}] {status}")
                return
        if isinstance(total, int | float) and total > 0 and isinstance(completed, int | float):
            decile = int(10 * completed / total)
            if decile != self.decile:
                self.decile = decile
                self.echo(f"[{self.node}] {status} {100 * completed / total:3.0f}% "
                          f"({_size(completed)} / {_size(total)})")  # fmt: skip


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _error_text(content: bytes) -> str:
    try:
        data = json.loads(content)
    except ValueError:
        return content.decode("utf-8", "replace").strip()[:200] or "no details"
    if isinstance(data, dict):
        error = data.get("error", data)
        return str(error.get("message", error) if isinstance(error, dict) else error)[:300]
    return str(data)[:300]


# -- warm ------------------------------------------------------------------------------------------


def warm(targets: list[Target], echo: Echo = print, *, keep_alive: str = "30m", timeout: float = 300.0) -> int:
    """Load the model on every target at once; one OK/FAIL line per node; return the exit code."""
    results = asyncio.run(_warm_all(targets, keep_alive, timeout))
    for target, (error, seconds) in zip(targets, results, strict=True):
        if error is None:
            echo(f"OK    {target.label}: {target.upstream_model} loaded ({seconds:.1f} s)")
        else:
            echo(f"FAIL  {target.label}: {error}")
    return 1 if any(error is not None for error, _ in results) else 0


async def _warm_all(targets: list[Target], keep_alive: str, timeout: float) -> list[tuple[str | None, float]]:
    limits = httpx.Timeout(timeout, connect=10.0)
    async with httpx.AsyncClient(timeout=limits) as client:
        return await asyncio.gather(*(_warm_one(client, t, keep_alive) for t in targets))


async def _warm_one(client: httpx.AsyncClient, target: Target, keep_alive: str) -> tuple[str | None, float]:
    started = time.monotonic()
    model = target.upstream_model
    if target.backend_type == "ollama":
        requests = [("/api/generate", {"model": model, "prompt": "", "keep_alive": keep_alive, "stream": False}),
                    # embedding-only models refuse /api/generate; an empty /api/embed loads them instead
                    ("/api/embed", {"model": model, "input": [], "keep_alive": keep_alive})]  # fmt: skip
    elif target.backend_type == "tei":
        requests = [("/embed", {"inputs": "warm-up"})]
    else:
        requests = [("/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": "Hi"}],
                                              "max_tokens": 1, "stream": False})]  # fmt: skip
    error = None
    for path, body in requests:
        url = f"{target.endpoint_url}{path}"
        try:
            response = await client.post(url, json=body, headers=target.headers)
        except httpx.ConnectError:
            return f"{url} refused the connection (or the host is unreachable)", 0.0
        except httpx.TimeoutException:
            return f"{url} did not answer within the timeout (a big model may need --timeout)", 0.0
        except httpx.HTTPError as exc:
            return f"{url} failed: {type(exc).__name__}", 0.0
        if response.status_code < 400:
            return None, time.monotonic() - started
        error = f"{url} answered {response.status_code}: {_error_text(response.content)}"
        if response.status_code != 400:  # only a 400 ("does not support generate") tries the next request
            break
    return error, 0.0
