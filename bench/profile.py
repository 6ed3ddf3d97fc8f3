"""Where the gateway's time goes: py-spy under load, summarised per component and per request.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;… count``, root first). Each
sample is attributed to one component: walking from the leaf towards the root, the first frame that
belongs to a known component decides (standard-library frames such as ``asyncio``, ``json``, ``uuid``,
``socket`` are skipped, so a socket write made by httpcore counts as the upstream client's, and a
``uuid4`` made by a middleware counts as the middleware's). A stack with no known frame is the event
loop's own work. Multiplying each share by the gateway's CPU time per request (psutil, same window)
gives microseconds of CPU per request per component.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (component, path fragments) in priority order for a single frame; the first fragment found wins.
COMPONENTS: list[tuple[str, tuple[str, ...]]] = [
    ("logging (structlog, info lines per request)", ("structlog/", "inferhub/observability/logging.py", "logging/")),
    ("metrics (prometheus_client)", ("prometheus_client/", "inferhub/observability/metrics.py")),
    ("tracing (opentelemetry)", ("opentelemetry/", "inferhub/observability/tracing.py")),
    (
        "usage/stats writes (SQLAlchemy, psycopg; threads)",
        (
            "sqlalchemy/",
            "psycopg/",
            "psycopg_pool/",
            "inferhub/store/",
            "inferhub/gateway/usage_writer.py",
            "inferhub/gateway/stats.py",
        ),
    ),
    ("limiter (limits.py)", ("inferhub/gateway/limits.py", "redis/")),
    ("metering (Meter: cost, usage record)", ("inferhub/gateway/metering.py",)),
    ("auth (KeyCache, scope)", ("inferhub/gateway/auth.py",)),
    (
        "routing+admission (pipeline, registry, balancer, admission)",
        (
            "inferhub/gateway/pipeline.py",
            "inferhub/gateway/_admission.py",
            "inferhub/gateway/balancer.py",
            "inferhub/gateway/registry.py",
            "inferhub/gateway/backend_state.py",
            "inferhub/gateway/circuit_breaker.py",
            "inferhub/gateway/fair_queue.py",
            "inferhub/gateway/retry_budget.py",
        ),
    ),
    (
        "upstream client (UpstreamClient, aiohttp; httpx)",
        (
            "inferhub/backends/upstream_client.py",
            "aiohttp/",
            "yarl/",
            "multidict/",
            "aiohappyeyeballs/",
            "httpx/",
            "httpcore/",
            "h11/",
            "anyio/",
            "sniffio/",
        ),
    ),
    ("adapter (openai_adapter, base, sse)", ("inferhub/backends/",)),
    ("routes+inference (api/*.py)", ("inferhub/api/",)),
    (
        "Inferhub middlewares (RequestId, BodySizeLimit, HttpMetrics)",
        ("inferhub/app.py", "inferhub/observability/http_metrics.py"),
    ),
    (
        "FastAPI/Starlette (routing, middleware stack, Request)",
        ("fastapi/", "starlette/", "pydantic/", "pydantic_core/"),
    ),
    ("uvicorn (httptools parsing, ASGI send/receive)", ("uvicorn/", "httptools/")),
    ("other Inferhub", ("inferhub/",)),
    ("other libraries", ("site-packages/",)),
]
EVENT_LOOP = "event loop (asyncio scheduling, select, transports)"

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?):(?P<line>\d+)\)$")


# Root frames only (the CLI and asyncio.run): a stack that reaches them with no other known frame is the loop's.
_ROOTS = ("inferhub/cli.py", "inferhub/server.py", "inferhub/__main__.py", "typer/", "click/")


def component_of(file: str) -> str | None:
    if any(root in file for root in _ROOTS):
        return None
    for name, fragments in COMPONENTS:
        if any(fragment in file for fragment in fragments):
            return name
    return None


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _split(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["func"], match["file"]


@dataclass
class ProfileSummary:
    samples: int
    components: dict[str, int]
    self_time: list[tuple[str, int]]  # leaf functions
    inclusive: list[tuple[str, int]]  # Inferhub functions, inclusive
    cpu_us_per_request: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def share(self, count: int) -> float:
        return count / self.samples if self.samples else 0.0

    def as_dict(self) -> dict[str, Any]:
        per_request = self.cpu_us_per_request
        return {
            "samples": self.samples,
            "cpu_us_per_request": per_request,
            "components": [
                {
                    "component": name,
                    "samples": n,
                    "share": round(self.share(n), 4),
                    "cpu_us_per_request": round(self.share(n) * per_request, 1) if per_request else None,
                }
                for name, n in sorted(self.components.items(), key=lambda kv: -kv[1])
            ],
            "top_self": [{"function": f, "share": round(self.share(n), 4)} for f, n in self.self_time],
            "top_inferhub_inclusive": [{"function": f, "share": round(self.share(n), 4)} for f, n in self.inclusive],
            **self.extra,
        }


def summarize_collapsed(text: str, *, cpu_us_per_request: float | None = None, top: int = 25) -> ProfileSummary:
    stacks = parse_collapsed(text)
    components: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        chosen = None
        for frame in reversed(frames):
            _, file = _split(frame)
            chosen = component_of(file)
            if chosen is not None:
                break
        components[chosen or EVENT_LOOP] += count
        leaves[frames[-1]] += count
        seen = set()
        for frame in frames:
            func, file = _split(frame)
            if "inferhub/" in file and "inferhub/cli.py" not in file and "inferhub/server.py" not in file:
                name = f"{func} ({file.split('inferhub/', 1)[1]})"
                if name not in seen:
                    seen.add(name)
                    inclusive[name] += count
    return ProfileSummary(
        total, dict(components), leaves.most_common(top), inclusive.most_common(top), cpu_us_per_request
    )


def render(summary: ProfileSummary, title: str = "profile") -> str:
    lines = [
        f"{title}: {summary.samples} samples"
        + (f", {summary.cpu_us_per_request:.0f} µs CPU per request" if summary.cpu_us_per_request else "")
    ]
    lines.append(f"  {'component':<64} {'share':>6} {'µs/req':>7}")
    for item in summary.as_dict()["components"]:
        us = f"{item['cpu_us_per_request']:.0f}" if item["cpu_us_per_request"] is not None else "-"
        lines.append(f"  {item['component']:<64} {item['share'] * 100:>5.1f}% {us:>7}")
    lines.append("  top Inferhub functions (inclusive):")
    for name, n in summary.inclusive[:15]:
        lines.append(f"    {summary.share(n) * 100:5.1f}%  {name}")
    lines.append("  top leaf functions (self):")
    for name, n in summary.self_time[:15]:
        lines.append(f"    {summary.share(n) * 100:5.1f}%  {name[:110]}")
    return "\n".join(lines)


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def record(
    pid: int, out: Path, *, duration: float, fmt: str = "raw", rate: int = 250, subprocesses: bool = False
) -> subprocess.Popen:
    """Start ``py-spy record`` on ``pid`` in the background; wait on the returned process."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy is not installed: run `bash bench/ensure-bench-tools.sh`")
    command = [
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(duration))),
        "--rate",
        str(rate),
        "--format",
        fmt,
        "--output",
        str(out),
        "--nonblocking",
    ]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
