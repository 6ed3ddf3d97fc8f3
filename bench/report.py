"""Results: one row per (scenario, target), the comparison with direct, the budget, JSON and a short table."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load import LoadResult, Sample, percentile

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    scenario: str
    target: str
    engine: str
    rounds: list[dict[str, Any]] = field(default_factory=list)  # each round's summary
    samples: list[Sample] = field(default_factory=list)  # in-process engine: every sample, merged over rounds
    duration: float = 0.0
    rss_before: int | None = None
    rss_after: int | None = None

    def add(self, summary: dict[str, Any], result: LoadResult | None, rss: tuple[int | None, int | None]) -> None:
        self.rounds.append(summary)
        if result is not None:
            self.samples.extend(result.samples)
            self.duration += result.duration
        if self.rss_before is None:
            self.rss_before = rss[0]
        if rss[1] is not None:
            self.rss_after = rss[1]

    def merged(self) -> dict[str, Any]:
        """Percentiles over every sample of every round (in-process engine), else the median of the rounds."""
        if self.samples:
            ok = [s for s in self.samples if s.ok]
            lat = sorted(s.latency for s in ok)
            ttft = sorted(s.ttft for s in ok if s.ttft is not None)
            chunks = sum(s.chunks for s in ok)
            errors = sum(1 for s in self.samples if not s.ok)
            ms = _ms
            return {
                "requests": len(self.samples),
                "ok": len(ok),
                "errors": errors,
                "rps": round(len(ok) / self.duration, 1) if self.duration else None,
                "p50": ms(percentile(lat, 50)),
                "p90": ms(percentile(lat, 90)),
                "p99": ms(percentile(lat, 99)),
                "ttft_p50": ms(percentile(ttft, 50)),
                "ttft_p99": ms(percentile(ttft, 99)),
                "chunks_per_s": round(chunks / self.duration, 1) if chunks and self.duration else None,
                "chunks_per_stream": round(chunks / len(ok), 2) if chunks and ok else None,
            }

        def med(path: tuple[str, ...]) -> float | None:
            values = []
            for summary in self.rounds:
                value: Any = summary
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                if value is not None:
                    values.append(value)
            return round(statistics.median(values), 4) if values else None

        return {
            "requests": sum(r["requests"] for r in self.rounds),
            "ok": sum(r["ok"] for r in self.rounds),
            "errors": sum(r["errors"] for r in self.rounds),
            "rps": med(("rps",)),
            "p50": med(("latency_ms", "p50")),
            "p90": med(("latency_ms", "p90")),
            "p99": med(("latency_ms", "p99")),
            "ttft_p50": med(("ttft_ms", "p50")),
            "ttft_p99": med(("ttft_ms", "p99")),
            "chunks_per_s": med(("chunks_per_s",)),
            "chunks_per_stream": med(("chunks_per_stream", "mean")),
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "target": self.target,
            "engine": self.engine,
            **self.merged(),
            "rss_before_mb": _mb(self.rss_before),
            "rss_after_mb": _mb(self.rss_after),
            "rounds": self.rounds,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<22} {'target':<18} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
        f"{'TTFT p50':>9} {'chunks/s':>10} {'errors':>6}  RSS MB before→after"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        rss = f"{_fmt(r['rss_before_mb'], '.1f')}→{_fmt(r['rss_after_mb'], '.1f')}" if r["rss_before_mb"] else "-"
        lines.append(
            f"{r['scenario']:<22} {r['target']:<18} {_fmt(r['rps'], '.0f'):>9} {_fmt(r['p50'], '.3f'):>8} "
            f"{_fmt(r['p90'], '.3f'):>8} {_fmt(r['p99'], '.3f'):>8} {_fmt(r['ttft_p50'], '.3f'):>9} "
            f"{_fmt(r['chunks_per_s'], '.0f'):>10} {r['errors']:>6}  {rss}"
        )
    return "\n".join(lines)


def write_json(name: str, payload: dict[str, Any], out: Path | None = None) -> Path:
    """``bench/results/<name>-<UTC time>.json`` (and ``<name>-latest.json``), or ``out`` if given."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    if out is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"{name}-{stamp}.json"
        latest = RESULTS / f"{name}-latest.json"
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        latest = None
    text = json.dumps(payload, indent=2, default=_default)
    out.write_text(text)
    if latest is not None:
        latest.write_text(text)
    return out


def _default(value: Any) -> Any:
    if isinstance(value, Sample):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
