"""A registered backend, a model's routing, and the statistics a backend gathers between flushes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class BackendRecord:
    id: int
    model_name: str
    backend_type: str
    endpoint_url: str
    upstream_model: str | None
    enabled: bool
    max_tokens: int | None
    temperature_default: float | None
    timeout_seconds: float
    description: str
    source: str
    weight: int
    priority: int
    max_concurrency: int | None
    draining: bool
    discover_models: bool
    credentials_encrypted: str | None
    avg_tokens_per_sec: float
    avg_latency_ms: float
    total_requests: int
    total_errors: int
    capabilities: list[str] | None = None  # None: the default of its type

    def public(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "credentials_encrypted"}
        out["has_credentials"] = self.credentials_encrypted is not None
        return out


@dataclass(slots=True)
class StatsDelta:
    """Accumulated outcome of requests to one backend since the last flush."""

    requests: int = 0
    errors: int = 0
    latency_ms_sum: float = 0.0
    tokens: int = 0
    generation_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class ModelRoute:
    model_name: str
    strategy: str
    fallback_models: tuple[str, ...]
    source: str = "api"

    def public(self) -> dict[str, object]:
        return {"model": self.model_name, "strategy": self.strategy, "fallbacks": list(self.fallback_models),
                "source": self.source}  # fmt: skip
