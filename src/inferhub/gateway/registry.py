"""BackendRegistry: the in-memory view of every backend, route and alias, rebuilt when the tables change.

The request path reads only this object. A rebuild swaps in a new immutable
snapshot in one assignment, so readers never see a half-built registry and never
wait on the database. Per-backend runtime state (load, health, circuit) lives in
``states`` and survives rebuilds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from inferhub.backends.base import Adapter, Backend, Capability
from inferhub.backends.ollama_adapter import OllamaAdapter
from inferhub.backends.openai_adapter import OpenAIAdapter
from inferhub.backends.tei_adapter import TEIAdapter
from inferhub.backends.upstream_client import UpstreamClient
from inferhub.fleet.records import BackendRecord, ModelRoute
from inferhub.gateway.backend_state import BackendState
from inferhub.gateway.circuit_breaker import CircuitBreaker

_ADAPTERS: dict[str, type[Adapter]] = {"openai": OpenAIAdapter, "ollama": OllamaAdapter, "tei": TEIAdapter}


def canonical_model_name(name: str) -> str:
    """``phi3:mini`` and ``phi3:mini:latest`` name the same model, as in Ollama."""
    return name[: -len(":latest")] if name.endswith(":latest") else name


def credential_headers(credentials: dict) -> tuple[tuple[str, str], ...]:
    """API key → ``Authorization: Bearer``; basic auth → ``Authorization: Basic``; plus custom headers."""
    import base64

    headers: dict[str, str] = {}
    if credentials.get("basic_auth_username") or credentials.get("basic_auth_password"):
        pair = f"{credentials.get('basic_auth_username') or ''}:{credentials.get('basic_auth_password') or ''}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    if credentials.get("api_key"):
        headers["Authorization"] = f"Bearer {credentials['api_key']}"
    headers.update(credentials.get("headers") or {})
    return tuple(headers.items())


def backend_from_record(record: BackendRecord, decrypt=None) -> Backend:
    auth: tuple[tuple[str, str], ...] = ()
    if record.credentials_encrypted and decrypt is not None:
        try:
            auth = credential_headers(decrypt(record.credentials_encrypted))
        except Exception as exc:  # e.g. rotated master key not yet deployed here: keep the rest of the registry
            import structlog

            structlog.get_logger("inferhub.registry").error(
                "backend_credentials_undecryptable", backend=record.id, error=str(exc)
            )
    return Backend(
        id=str(record.id),
        model_name=record.model_name,
        backend_type=record.backend_type,
        endpoint_url=record.endpoint_url.rstrip("/"),
        upstream_model=record.upstream_model,
        enabled=record.enabled,
        max_tokens=record.max_tokens,
        temperature_default=record.temperature_default,
        timeout_seconds=record.timeout_seconds,
        description=record.description,
        source=record.source,
        weight=record.weight,
        priority=record.priority,
        max_concurrency=record.max_concurrency,
        draining=record.draining,
        discover_models=record.discover_models,
        capabilities=frozenset(record.capabilities) if record.capabilities is not None else None,  # type: ignore[arg-type]
        auth_headers=auth,
    )


def _learn_key(backend: Backend) -> tuple[str, str, str]:
    return backend.id, backend.endpoint_url, backend.target_model


@dataclass(frozen=True, slots=True)
class _Snapshot:
    backends: tuple[Backend, ...]
    by_model: dict[str, tuple[Backend, ...]]
    adapters: dict[str, Adapter]
    routes: dict[str, ModelRoute]
    aliases: dict[str, str]


@dataclass(frozen=True, slots=True)
class RoutingDefaults:
    strategy: str = "least-busy"
    max_concurrency: int = 8
    failure_threshold: int = 3
    cooldown_seconds: float = 10.0


class BackendRegistry:
    def __init__(self, defaults: RoutingDefaults | None = None, decrypt=None) -> None:
        self.defaults = defaults or RoutingDefaults()
        self._decrypt = decrypt
        self._local: dict[str, tuple[Backend, Adapter]] = {}
        self._stored: list[Backend] = []
        self._routes: dict[str, ModelRoute] = {}
        self._aliases: dict[str, str] = {}
        self._discovered: dict[str, tuple[str, ...]] = {}
        # What engines said they serve, by (backend id, endpoint, upstream model): a changed backend is asked again.
        self._learned: dict[tuple[str, str, str], frozenset[Capability] | None] = {}
        self._clients: dict[tuple[str, float], UpstreamClient] = {}
        self._adapters: dict[str, Adapter] = {}
        self.states: dict[str, BackendState] = {}
        self._snapshot = _Snapshot((), {}, {}, {}, {})

    # -- changes (off the request path) --------------------------------------------------------

    def add_local(self, backend: Backend, adapter: Adapter) -> None:
        self._local[backend.id] = (backend, adapter)
        self._rebuild()

    def replace_stored(self, records: list[BackendRecord]) -> None:
        self._stored = [backend_from_record(r, self._decrypt) for r in records]
        self._rebuild()

    def replace_routes(self, routes: list[ModelRoute], aliases: dict[str, str]) -> None:
        self._routes = {canonical_model_name(r.model_name): r for r in routes}
        self._aliases = {canonical_model_name(a): canonical_model_name(m) for a, m in aliases.items()}
        self._rebuild()

    def set_discovered(self, backend_id: str, models: list[str]) -> bool:
        """Record the models an endpoint reports; returns True if that changed the registry."""
        names = tuple(sorted({canonical_model_name(m) for m in models}))
        if self._discovered.get(backend_id) == names:
            return False
        self._discovered[backend_id] = names
        self._rebuild()
        return True

    def set_learned(self, backend: Backend, capabilities: frozenset[Capability] | None) -> bool:
        """Record what the engine says a backend serves (None: nothing beyond its type's default); a
        registration that declares ``capabilities`` keeps them. Returns True if that changed the registry."""
        key = _learn_key(backend)
        if key in self._learned and self._learned[key] == capabilities:
            return False
        self._learned[key] = capabilities
        self._rebuild()
        return True

    def learned(self, backend: Backend) -> bool:
        return _learn_key(backend) in self._learned

    def client_for(self, endpoint_url: str, timeout: float) -> UpstreamClient:
        """One pooled client per upstream (and timeout), reused across requests and reloads."""
        key = (endpoint_url, timeout)
        client = self._clients.get(key)
        if client is None:
            client = UpstreamClient(endpoint_url, timeout)
            self._clients[key] = client
        return client

    def _with_discovered(self) -> list[Backend]:
        explicit = {(canonical_model_name(b.model_name), b.endpoint_url) for b in self._stored}
        extra = []
        for backend in self._stored:
            if not backend.discover_models:
                continue
            for model in self._discovered.get(backend.id, ()):
                if (model, backend.endpoint_url) in explicit:
                    continue
                explicit.add((model, backend.endpoint_url))
                extra.append(replace(backend, id=f"{backend.id}:{model}", model_name=model, upstream_model=model,
                                     source="discovered", discover_models=False))  # fmt: skip
        return extra

    def _rebuild(self) -> None:
        adapters: dict[str, Adapter] = {}
        backends: list[Backend] = []
        for backend, adapter in self._local.values():
            adapters[backend.id] = adapter
            backends.append(backend)
        for backend in [*self._stored, *self._with_discovered()]:
            if backend.capabilities is None and self._learned.get(_learn_key(backend)) is not None:
                backend = replace(backend, capabilities=self._learned[_learn_key(backend)])
            previous = self._adapters.get(backend.id)
            if previous is not None and previous.backend == backend:
                adapters[backend.id] = previous
            else:
                client = self.client_for(backend.endpoint_url, backend.timeout_seconds)
                adapters[backend.id] = _ADAPTERS[backend.protocol](backend, client)
            backends.append(backend)
        by_model: dict[str, list[Backend]] = {}
        for backend in backends:
            by_model.setdefault(canonical_model_name(backend.model_name), []).append(backend)
            state = self.states.get(backend.id)
            limit = backend.max_concurrency or self.defaults.max_concurrency
            if state is None:
                breaker = CircuitBreaker(self.defaults.failure_threshold, self.defaults.cooldown_seconds)
                self.states[backend.id] = BackendState(breaker=breaker, max_concurrency=limit)
            else:
                state.max_concurrency = limit
        self._adapters = adapters
        self._snapshot = _Snapshot(
            tuple(backends), {k: tuple(v) for k, v in by_model.items()}, adapters, dict(self._routes),
            dict(self._aliases),
        )  # fmt: skip

    async def close(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    # -- reads (the request path) --------------------------------------------------------------

    @property
    def backends(self) -> tuple[Backend, ...]:
        return self._snapshot.backends

    def resolve(self, model: str) -> str:
        """Follow an alias (``default`` → ``llama3.1:8b``) to the canonical model name."""
        name = canonical_model_name(model)
        return self._snapshot.aliases.get(name, name)

    def candidates(self, model: str) -> tuple[Backend, ...]:
        return self._snapshot.by_model.get(self.resolve(model), ())

    def route(self, model: str) -> ModelRoute:
        name = self.resolve(model)
        return self._snapshot.routes.get(name) or ModelRoute(name, self.defaults.strategy, ())

    def adapter(self, backend: Backend) -> Adapter:
        return self._snapshot.adapters[backend.id]

    def state(self, backend: Backend) -> BackendState:
        return self.states[backend.id]

    def usable(self, backend: Backend) -> bool:
        """In rotation: enabled, not draining, passing health checks, circuit not open."""
        if not backend.enabled or backend.draining:
            return False
        state = self.states[backend.id]
        return state.healthy and state.breaker.allows_request()

    def model_names(self) -> list[str]:
        names = {name for name, group in self._snapshot.by_model.items() if any(b.enabled for b in group)}
        names |= {alias for alias, target in self._snapshot.aliases.items() if target in names}
        return sorted(names)

    def aliases(self) -> dict[str, str]:
        return dict(self._snapshot.aliases)

    def routes(self) -> dict[str, ModelRoute]:
        return dict(self._snapshot.routes)
