"""Inferhub's benchmark harness: ``python -m bench.harness {run,overhead,leak,workers,profile,upstream,all}``.

run       load any OpenAI-compatible URL: closed loop (--concurrency) or open loop (--rate), streaming or not
overhead  start nginx (static upstream) and Inferhub, measure direct vs through Inferhub (and --other-url),
          interleaved, and print the added latency, the throughput ratio and the budget
leak      RSS of the gateway after warm-up and after N more requests (--requests 200000 for the budget)
workers   throughput with --workers 1 and 2; checks that limits and metrics stay correct with 2
profile   py-spy on the gateway under load: CPU per request and where it goes, per component
upstream  only run the static upstream (fixed ports with --json-port/--sse-port), e.g. for a LiteLLM proxy
all       overhead, leak, workers and profile: what `make bench` runs

Results go to bench/results/ (JSON, gitignored); docs/performance.md explains the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import wrk
from bench.gateway import Gateway, metric_sum, redis_answers, snapshot_source
from bench.load import LoadResult, Target, closed_loop, fetch_stream_payloads, open_loop, run_sync, summarize
from bench.profile import record as py_spy_record
from bench.profile import render as render_profile
from bench.profile import summarize_collapsed
from bench.report import RESULTS, Row, table, write_json
from bench.upstream import STREAM_CHUNKS, StaticUpstream, nginx_binary

BUDGET = {
    "added_p50_ms": 0.5,
    "added_p99_ms": 2.0,
    "rps_c16": 3000,
    "chunks_per_s": 20000,
    "ttft_added_ms": 1.0,
    "rss_growth_pct": 10.0,
}
BUDGET_LEAK_REQUESTS = 200_000


def _say(text: str) -> None:
    print(text, flush=True)


# -- one load run ------------------------------------------------------------------------------------


def measure(
    target: Target,
    *,
    concurrency: int = 1,
    rate: float | None = None,
    stream: bool | None = None,
    requests: int | None = None,
    duration: float | None = None,
    warmup: int = 0,
    engine: str = "auto",
    rss_of: Any = None,
) -> tuple[dict[str, Any], LoadResult | None, tuple[int | None, int | None]]:
    """One run against one target. ``engine``: ``python`` (in-process), ``wrk``, or ``auto``: wrk for a
    closed-loop throughput run of concurrency > 1 that is not streaming, the in-process client otherwise."""
    if stream is not None:
        target.stream = stream
    use_wrk = engine == "wrk" or (
        engine == "auto"
        and wrk.available()
        and rate is None
        and concurrency > 1
        and not target.stream
        and requests is None
    )
    if use_wrk and rate is not None:
        raise SystemExit("wrk has no open loop: use --engine python with --rate")
    rss = rss_of() if rss_of else None
    if use_wrk:
        if warmup:
            run_sync(lambda: closed_loop(target, concurrency=min(concurrency, 8), requests=warmup))
            rss = rss_of() if rss_of else None
        summary = wrk.run(target, concurrency=concurrency, duration=duration or 10.0)
        result = None
    else:
        if rate is not None:
            result = run_sync(lambda: open_loop(target, rate=rate, requests=requests, duration=duration, warmup=warmup))
        else:
            result = run_sync(
                lambda: closed_loop(
                    target, concurrency=concurrency, requests=requests, duration=duration, warmup=warmup
                )
            )
        summary = summarize(result)
    after = rss_of() if rss_of else None
    summary.update(
        {
            "target": target.name,
            "concurrency": concurrency,
            "rate": rate,
            "stream": target.stream,
            "rss_before_mb": _mb(rss),
            "rss_after_mb": _mb(after),
        }
    )
    return summary, result, (rss, after)


def _args(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "func"}


def _mb(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 1)


def _rss_of_pid(pid: int | None):
    if pid is None:
        return None
    import psutil

    def rss() -> int | None:
        try:
            proc = psutil.Process(pid)
            return proc.memory_info().rss + sum(
                c.memory_info().rss
                for c in proc.children(recursive=True)
                if "python" in c.name() or "inferhub" in c.name()
            )
        except psutil.Error:
            return None

    return rss


def cmd_run(args: argparse.Namespace) -> int:
    if args.requests is None and args.duration is None:
        args.duration = 10.0
    target = Target(
        "target",
        args.url,
        key=args.key,
        model=args.model,
        stream=args.stream,
        path=args.path,
        max_tokens=args.max_tokens,
    )
    summary, _, _ = measure(
        target,
        concurrency=args.concurrency,
        rate=args.rate,
        requests=args.requests,
        duration=args.duration,
        warmup=args.warmup,
        engine=args.engine,
        rss_of=_rss_of_pid(args.pid),
    )
    row = Row("run", args.url, summary["engine"])
    row.add(summary, None, (None, None))
    rendered = row.as_dict()
    rendered["rss_before_mb"], rendered["rss_after_mb"] = summary["rss_before_mb"], summary["rss_after_mb"]
    _say(table([rendered]))
    if summary["error_kinds"]:
        _say(f"errors: {summary['error_kinds']}")
    if summary.get("late"):
        _say(f"open loop: {summary['late']} sends left more than 1 ms late (the client fell behind)")
    path = write_json("run", {"args": _args(args), "summary": summary}, Path(args.json) if args.json else None)
    _say(f"json: {path}")
    return 0 if summary["errors"] == 0 else 1


# -- the stack: nginx + Inferhub ------------------------------------------------------------------------


@contextlib.contextmanager
def stack(
    args: argparse.Namespace,
    variants: list[str],
    *,
    workers: int = 1,
    redis_url: str | None = None,
    tracemalloc_frames: int = 0,
) -> Iterator[tuple[StaticUpstream, dict[str, Gateway]]]:
    """The static upstream and one gateway per variant: ``shipped`` (serve binds its own socket) and
    ``nodelay`` (the harness binds an IPPROTO_TCP socket and passes it with --listen-fd)."""
    if nginx_binary() is None:
        raise SystemExit("nginx is not installed: run `bash bench/ensure-bench-tools.sh` (apt package nginx)")
    upstream = StaticUpstream(json_port=args.json_port or 0, sse_port=args.sse_port or 0)
    gateways: dict[str, Gateway] = {}
    src = Path(args.src).resolve() if getattr(args, "src", None) else None
    with contextlib.ExitStack() as cleanup, upstream:
        if getattr(args, "ref", None):
            tmp = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="inferhub-bench-src-")))
            src = snapshot_source(args.ref, tmp)
            _say(f"gateway source: git {args.ref} ({_rev(args.ref)}), unpacked in {src}")
        elif src is not None:
            _say(f"gateway source: {src}")
        _say(f"static upstream: nginx {upstream.json_url} (JSON), {upstream.sse_url} (SSE, {STREAM_CHUNKS} chunks)")
        try:
            for variant in variants:
                spec = variant_spec(variant, getattr(args, "variant", None))
                variant_src = src
                if spec["ref"]:  # `--variant before:@REF`: this gateway runs another commit's code
                    variant_src = snapshot_source(spec["ref"], tmp_root(cleanup) / variant)
                    _say(f"inferhub ({variant}) source: git {spec['ref']} ({_rev(spec['ref'])})")
                started = time.monotonic()
                gateway = Gateway(
                    upstream,
                    workers=workers,
                    redis_url=redis_url,
                    inherit_socket=spec["nodelay"],
                    database_url=args.database_url,
                    env={**_env_pairs(getattr(args, "gateway_env", None)), **spec["env"]},
                    uvloop=getattr(args, "uvloop", False) or spec["uvloop"],
                    tracemalloc_frames=tracemalloc_frames,
                    src=variant_src,
                )
                gateways[variant] = gateway.start()
                _say(
                    f"inferhub ({variant}, workers={workers}): {gateway.url}, pid {gateway.process.pid}, "
                    f"started in {time.monotonic() - started:.1f}s"
                )
            yield upstream, gateways
        finally:
            for gateway in gateways.values():
                gateway.stop()


def tmp_root(cleanup: contextlib.ExitStack) -> Path:
    return Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="inferhub-bench-src-")))


def _rev(ref: str) -> str:
    import subprocess

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", ref], capture_output=True, text=True)
    return done.stdout.strip() or "?"


def _env_pairs(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--gateway-env expects NAME=VALUE, got {pair!r}")
        out[name] = value
    return out


def _gateway_name(variant: str) -> str:
    return "inferhub" if variant == "shipped" else f"inferhub[{variant}]"


def _variants(choice: str, extra: list[str] | None = None) -> list[str]:
    base = ["shipped", "nodelay"] if choice == "both" else [choice]
    return base + [item.partition(":")[0] for item in extra or []]


def variant_spec(name: str, extra: list[str] | None = None) -> dict[str, Any]:
    """``shipped``, ``nodelay``, or a ``--variant NAME:SPEC``.

    SPEC is a comma list of ``nodelay``, ``uvloop``, ``ENV=VALUE`` and ``@REF`` (the gateway runs
    ``git archive REF src``: before/after comparisons in one interleaved run).
    """
    spec: dict[str, Any] = {"nodelay": name == "nodelay", "uvloop": False, "env": {}, "ref": None}
    for item in extra or []:
        variant, _, items = item.partition(":")
        if variant != name:
            continue
        for part in filter(None, (p.strip() for p in items.split(","))):
            if part in ("nodelay", "uvloop"):
                spec[part] = True
            elif part.startswith("@"):
                spec["ref"] = part[1:]
            elif "=" in part:
                key, _, value = part.partition("=")
                spec["env"][key] = value
            else:
                raise SystemExit(f"--variant {item!r}: {part!r} is not nodelay, uvloop, @REF or NAME=VALUE")
    return spec


# -- overhead ---------------------------------------------------------------------------------------------


SCENARIOS = [
    # name, stream, concurrency, engine
    ("c1 json", False, 1, "python"),
    ("c16 json", False, 16, "auto"),
    ("c1 stream", True, 1, "python"),
    ("c16 stream", True, 16, "python"),
]


def overhead_targets(
    upstream: StaticUpstream, gateways: dict[str, Gateway], args: argparse.Namespace, stream: bool
) -> list[Target]:
    targets = [
        Target("direct", upstream.sse_url if stream else upstream.json_url, model="bench-upstream", stream=stream)
    ]
    for variant, gateway in gateways.items():
        targets.append(
            Target(
                _gateway_name(variant),
                gateway.url,
                key=gateway.key,
                model="bench-stream" if stream else "bench",
                stream=stream,
                pid=gateway.process.pid if gateway.process else None,
            )
        )
    if args.other_url:
        model = (args.other_stream_model or args.other_model) if stream else args.other_model
        targets.append(
            Target(args.other_name, args.other_url, key=args.other_key, model=model, stream=stream, pid=args.other_pid)
        )
    return targets


def passthrough_check(upstream: StaticUpstream, gateways: dict[str, Gateway]) -> dict[str, Any]:
    """The gateway's streamed data: payloads must be the upstream's bytes, in order (no re-encoding)."""
    direct = run_sync(lambda: fetch_stream_payloads(Target("direct", upstream.sse_url, stream=True)))
    out: dict[str, Any] = {"upstream_chunks": len(direct)}
    for variant, gateway in gateways.items():
        through = run_sync(
            lambda g=gateway: fetch_stream_payloads(Target("gw", g.url, key=g.key, model="bench-stream", stream=True))
        )
        out[_gateway_name(variant)] = (
            "identical"
            if through == direct
            else (
                f"DIFFERENT ({len(through)} chunks, first difference at "
                f"{next((i for i, (a, b) in enumerate(zip(through, direct, strict=False)) if a != b), min(len(through), len(direct)))})"  # noqa: E501
            )
        )
    return out


def cmd_overhead(args: argparse.Namespace) -> int:
    variants = _variants(args.gateway, args.variant)
    with stack(args, variants) as (upstream, gateways):
        passthrough = passthrough_check(upstream, gateways)
        _say(f"stream pass-through: {passthrough}")
        scenarios = [s for s in SCENARIOS if not args.scenarios or s[0] in args.scenarios]
        rows: dict[tuple[str, str], Row] = {}
        for _scenario, stream, concurrency, _engine in scenarios:  # warm every target once
            for target in overhead_targets(upstream, gateways, args, stream):
                measure(target, concurrency=concurrency, requests=args.warmup, engine="python")
        for round_number in range(1, args.rounds + 1):
            for scenario, stream, concurrency, engine in scenarios:
                seconds = args.latency_seconds if concurrency == 1 else args.throughput_seconds
                for target in overhead_targets(upstream, gateways, args, stream):
                    for gateway in gateways.values():
                        gateway.check_alive()
                    summary, result, rss = measure(
                        target, concurrency=concurrency, duration=seconds, engine=engine, rss_of=_rss_of_pid(target.pid)
                    )
                    key = (scenario, target.name)
                    row = rows.setdefault(key, Row(scenario, target.name, summary["engine"]))
                    row.add(summary, result, rss)
                    _say(
                        f"  round {round_number} {scenario:<11} {target.name:<18} {summary['rps']:>9.0f} req/s  "
                        f"p50 {summary['latency_ms']['p50']} ms  errors {summary['errors']}"
                    )
        rendered = [row.as_dict() for row in rows.values()]
    comparison = compare(rendered)
    budget = budget_check(rendered, passthrough)
    _say("")
    _say(f"machine load average (1/5/15 min): {machine()['loadavg']} on {machine()['cpus']} CPUs")
    _say(table(rendered))
    _say("")
    _say(render_comparison(comparison))
    _say("")
    _say(render_budget(budget))
    payload = {
        "kind": "overhead",
        "args": _args(args),
        "machine": machine(),
        "passthrough": passthrough,
        "rows": rendered,
        "comparison": comparison,
        "budget": budget,
    }
    path = write_json("overhead", payload, Path(args.json) if args.json else None)
    _say(f"\njson: {path}")
    return 0 if all(r["errors"] == 0 for r in rendered) else 1


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each non-direct target against direct, per scenario: added latency, TTFT, throughput ratio."""
    by = {(r["scenario"], r["target"]): r for r in rows}
    out = []
    for (scenario, target), row in by.items():
        direct = by.get((scenario, "direct"))
        if target == "direct" or direct is None:
            continue

        def diff(key: str, row=row, direct=direct) -> float | None:
            a, b = row.get(key), direct.get(key)
            return None if a is None or b is None else round(a - b, 3)

        out.append(
            {
                "scenario": scenario,
                "target": target,
                "added_p50_ms": diff("p50"),
                "added_p90_ms": diff("p90"),
                "added_p99_ms": diff("p99"),
                "added_ttft_p50_ms": diff("ttft_p50"),
                "throughput_ratio": round(row["rps"] / direct["rps"], 4) if row["rps"] and direct["rps"] else None,
                "rps": row["rps"],
                "chunks_per_s": row["chunks_per_s"],
            }
        )
    return out


def render_comparison(comparison: list[dict[str, Any]]) -> str:
    lines = [
        f"{'scenario':<12} {'target':<18} {'+p50 ms':>8} {'+p90 ms':>8} {'+p99 ms':>8} {'+TTFT ms':>9} "
        f"{'throughput vs direct':>21}"
    ]
    for c in comparison:
        ratio = f"{c['throughput_ratio'] * 100:.1f}%" if c["throughput_ratio"] is not None else "-"
        lines.append(
            f"{c['scenario']:<12} {c['target']:<18} {_f(c['added_p50_ms']):>8} {_f(c['added_p90_ms']):>8} "
            f"{_f(c['added_p99_ms']):>8} {_f(c['added_ttft_p50_ms']):>9} {ratio:>21}"
        )
    return "\n".join(lines)


def _f(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def budget_check(rows: list[dict[str, Any]], passthrough: dict[str, Any]) -> list[dict[str, Any]]:
    comparison = {(c["scenario"], c["target"]): c for c in compare(rows)}
    by = {(r["scenario"], r["target"]): r for r in rows}
    targets = sorted({r["target"] for r in rows if r["target"].startswith("inferhub")})
    out = []
    for target in targets:

        def item(name: str, value: float | None, limit: float, higher_is_better: bool = False, target=target) -> None:
            if value is None:
                status = "n/a"
            else:
                status = "PASS" if (value >= limit if higher_is_better else value <= limit) else "MISS"
            out.append({"target": target, "budget": name, "limit": limit, "measured": value, "status": status})

        c1 = comparison.get(("c1 json", target), {})
        item("added latency p50, c=1 (ms)", c1.get("added_p50_ms"), BUDGET["added_p50_ms"])
        item("added latency p99, c=1 (ms)", c1.get("added_p99_ms"), BUDGET["added_p99_ms"])
        item("throughput c=16 (req/s)", by.get(("c16 json", target), {}).get("rps"), BUDGET["rps_c16"], True)
        item(
            "SSE chunks/s forwarded, c=16",
            by.get(("c16 stream", target), {}).get("chunks_per_s"),
            BUDGET["chunks_per_s"],
            True,
        )
        item(
            "TTFT added p50, c=1 (ms)",
            comparison.get(("c1 stream", target), {}).get("added_ttft_p50_ms"),
            BUDGET["ttft_added_ms"],
        )
        same = passthrough.get(target)
        status = "n/a" if same is None else ("PASS" if same == "identical" else "MISS")
        out.append(
            {
                "target": target,
                "budget": "chunks passed through unchanged",
                "limit": "identical",
                "measured": same,
                "status": status,
            }
        )
    return out


def render_budget(budget: list[dict[str, Any]]) -> str:
    lines = [f"{'target':<18} {'budget':<34} {'limit':>10} {'measured':>12}  status"]
    for b in budget:
        measured = b["measured"] if isinstance(b["measured"], str) else _f(b["measured"], ".2f")
        lines.append(f"{b['target']:<18} {b['budget']:<34} {b['limit']!s:>10} {measured:>12}  {b['status']}")
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import os
    import platform

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        # Other processes on the machine skew every number: the 1/5/15-minute load when the result was written.
        "loadavg": [round(v, 2) for v in os.getloadavg()],
    }


# -- leak ---------------------------------------------------------------------------------------------


def cmd_leak(args: argparse.Namespace) -> int:
    frames = getattr(args, "tracemalloc", 0) or 0
    with stack(args, [args.gateway if args.gateway != "both" else "nodelay"], tracemalloc_frames=frames) as (
        _,
        gateways,
    ):
        gateway = next(iter(gateways.values()))
        plain = Target("gw", gateway.url, key=gateway.key, model="bench")
        streamed = Target("gw-stream", gateway.url, key=gateway.key, model="bench-stream", stream=True)
        stream_workers = max(1, round(args.concurrency * args.stream_share)) if args.stream_share > 0 else 0
        plain_workers = max(1, args.concurrency - stream_workers)

        def batch(n: int) -> tuple[int, int, float]:
            n_stream = round(n * args.stream_share)

            async def both():
                import asyncio

                jobs = [closed_loop(plain, concurrency=plain_workers, requests=n - n_stream)]
                if n_stream:
                    jobs.append(closed_loop(streamed, concurrency=stream_workers, requests=n_stream))
                return await asyncio.gather(*jobs)

            started = time.perf_counter()
            results = run_sync(both)
            done = sum(len(r.samples) for r in results)
            errors = sum(1 for r in results for s in r.samples if not s.ok)
            return done, errors, time.perf_counter() - started

        _say(f"warm-up: {args.warmup} requests ({args.stream_share:.0%} streamed)")
        batch(args.warmup)
        gateway.check_alive()
        time.sleep(2)  # let the usage writer flush
        baseline = gateway.rss_bytes()
        first_snapshot = gateway.snapshot() if frames else None
        curve = [{"requests": 0, "rss_mb": _mb(baseline)}]
        _say(f"RSS after warm-up: {_mb(baseline)} MB")
        steps = max(1, args.steps)
        total = errors = 0
        elapsed = 0.0
        for step in range(steps):
            n = args.requests // steps + (1 if step < args.requests % steps else 0)
            gateway.check_alive()
            done, bad, seconds = batch(n)
            total, errors, elapsed = total + done, errors + bad, elapsed + seconds
            rss = gateway.rss_bytes()
            curve.append({"requests": total, "rss_mb": _mb(rss)})
            _say(f"  {total:>8} requests  RSS {_mb(rss)} MB  ({done / seconds:.0f} req/s, errors {bad})")
        time.sleep(2)
        final = gateway.rss_bytes()
        growth = (final - baseline) / baseline * 100 if baseline else None
        pending = metric_sum(gateway.metrics_text(), "llm_usage_writer_pending")
        growth_sites = tracemalloc_diff(first_snapshot, gateway.snapshot(), total) if first_snapshot else None
    # The budget is stated over 200,000 requests: a shorter run gives a linear projection, not a verdict.
    projected = growth * BUDGET_LEAK_REQUESTS / total if growth is not None and total else None
    if growth is None:
        status = "n/a"
    elif total >= BUDGET_LEAK_REQUESTS:
        status = "PASS" if growth <= BUDGET["rss_growth_pct"] else "MISS"
    else:
        status = f"n/a below {BUDGET_LEAK_REQUESTS:,} requests; linear projection {projected:+.1f}%"
    _say(f"\nleak: {total} requests after {args.warmup} warm-up, {errors} errors, {total / elapsed:.0f} req/s")
    _say(
        f"RSS {_mb(baseline)} MB → {_mb(final)} MB: {growth:+.2f}% (budget ≤ {BUDGET['rss_growth_pct']:g}% over "
        f"{BUDGET_LEAK_REQUESTS:,}: {status}); usage records pending at the end: {pending:g}"
    )
    payload = {
        "kind": "leak",
        "args": _args(args),
        "machine": machine(),
        "requests": total,
        "errors": errors,
        "rps": round(total / elapsed, 1),
        "rss_after_warmup_mb": _mb(baseline),
        "rss_final_mb": _mb(final),
        "growth_pct": round(growth, 3) if growth is not None else None,
        "projected_growth_pct_200k": round(projected, 3) if projected is not None else None,
        "status": status,
        "curve": curve,
        "usage_pending_at_end": pending,
        "tracemalloc_growth": growth_sites,
    }
    _say(f"json: {write_json('leak', payload, Path(args.json) if args.json else None)}")
    return 0 if errors == 0 else 1


def tracemalloc_diff(first: Path, second: Path, requests: int, top: int = 12) -> list[dict[str, Any]]:
    """The allocation sites whose live memory grew most between two snapshots, per 1,000 requests."""
    import tracemalloc

    old, new = tracemalloc.Snapshot.load(str(first)), tracemalloc.Snapshot.load(str(second))
    noise = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    old, new = old.filter_traces(noise), new.filter_traces(noise)
    stats = new.compare_to(old, "traceback")
    out = []
    _say(f"\ntracemalloc: live memory growth by allocation site over {requests} requests")
    for stat in stats[:top]:
        frames = [f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in stat.traceback]
        per_k = stat.size_diff / max(1, requests) * 1000
        out.append({"size_diff_kb": round(stat.size_diff / 1024, 1), "count_diff": stat.count_diff,
                    "bytes_per_1000_requests": round(per_k), "traceback": frames})  # fmt: skip
        _say(f"  {stat.size_diff / 1024:>9.1f} KiB {stat.count_diff:>+8} blocks  {per_k:>8.0f} B/1k req")
        for frame in frames[-6:]:
            _say(f"      {frame}")
    return out


# -- workers ------------------------------------------------------------------------------------------


def cmd_workers(args: argparse.Namespace) -> int:
    redis_url = args.redis_url if redis_answers(args.redis_url) else None
    _say(f"limits counted in: {'Redis ' + redis_url if redis_url else 'memory (per process; Redis did not answer)'}")
    results = []
    for count in args.workers:
        if redis_url:
            import redis

            # The harness's own database number. Each run starts a fresh PostgreSQL, so key ids repeat:
            # counters left by the previous run (same minute window) would count against the new keys.
            redis.Redis.from_url(redis_url).flushdb()
        with stack(args, ["shipped"], workers=count, redis_url=redis_url) as (_, gws):
            gateway = next(iter(gws.values()))
            target = Target(f"inferhub x{count}", gateway.url, key=gateway.key, model="bench")
            measure(target, concurrency=args.concurrency, requests=args.warmup, engine="python")
            before = metric_sum(gateway.metrics_text(), "llm_requests_total", endpoint="/v1/chat/completions")
            rounds = []
            for _ in range(args.rounds):
                split: dict[str, int] = {}
                probe = threading.Timer(args.duration / 2, lambda split=split, g=gateway: split.update(connections(g)))
                probe.start()
                summary, _, _ = measure(target, concurrency=args.concurrency, duration=args.duration, engine="auto")
                probe.join()
                summary["connections_per_worker"] = split
                rounds.append(summary)
            time.sleep(0.5)
            counted = metric_sum(gateway.metrics_text(), "llm_requests_total", endpoint="/v1/chat/completions")
            sent = sum(r["requests"] for r in rounds)
            metrics_ok = sent <= counted - before <= sent + args.concurrency * args.rounds
            # Without Redis each worker counts its own requests (documented): up to rpm x workers pass.
            limit = limit_check(gateway, args.limit_rpm, processes=1 if redis_url else count)
            rps = sorted(r["rps"] for r in rounds)[len(rounds) // 2]
            cpu = _cpu_note(gateway)
            results.append(
                {
                    "workers": count,
                    "rps": rps,
                    "rounds": rounds,
                    "metrics_counted": counted - before,
                    "requests_sent": sent,
                    "metrics_ok": metrics_ok,
                    "limit": limit,
                    "cpu": cpu,
                }
            )
            splits = " ".join("/".join(str(n) for n in r["connections_per_worker"].values()) for r in rounds)
            per_round = ", ".join(f"{r['rps']:.0f}" for r in rounds)
            _say(
                f"workers={count}: {rps:.0f} req/s (median of {args.rounds}; rounds "
                f"{per_round}; client connections per worker {splits}); "
                f"metrics counted {counted - before:g} "
                f"for {sent} answered ({'ok' if metrics_ok else 'WRONG'}); rpm={args.limit_rpm} key: "
                f"{limit['ok']} ok, {limit['limited']} refused ({'ok' if limit['correct'] else 'WRONG'})"
            )
    if len(results) >= 2 and results[0]["rps"]:
        scale = results[-1]["rps"] / results[0]["rps"]
        _say(f"scaling {results[-1]['workers']} vs {results[0]['workers']} workers: x{scale:.2f}")
    else:
        scale = None
    payload = {
        "kind": "workers",
        "args": _args(args),
        "machine": machine(),
        "redis": redis_url,
        "results": results,
        "scaling": scale,
    }
    _say(f"json: {write_json('workers', payload, Path(args.json) if args.json else None)}")
    return 0 if all(r["metrics_ok"] and r["limit"]["correct"] for r in results) else 1


def connections(gateway: Gateway) -> dict[str, int]:
    """Established client connections held by each worker process (how the kernel spread them)."""
    out = {}
    for pid in gateway.worker_pids():
        try:
            held = psutil_process(pid).net_connections(kind="tcp")
        except Exception:
            continue
        out[str(pid)] = sum(1 for c in held if c.laddr and c.laddr.port == gateway.port and c.status == "ESTABLISHED")
    return out


def psutil_process(pid: int):
    import psutil

    return psutil.Process(pid)


def _cpu_note(gateway: Gateway) -> dict[str, float]:
    out = {}
    for proc in gateway.processes():
        try:
            times = proc.cpu_times()
            out[str(proc.pid)] = round(times.user + times.system, 2)
        except Exception:
            continue
    return out


def limit_check(gateway: Gateway, rpm: int, processes: int = 1) -> dict[str, Any]:
    """A fresh key with ``rpm``; 1.5 x rpm requests in one minute window: exactly ``rpm`` must pass
    (counters shared in Redis), or between ``rpm`` and ``rpm x processes`` (per-process memory counters)."""
    key = gateway.provision(f"limit-{int(time.time())}", key_limits={"rpm": rpm}, tenant_limits={})
    seconds = time.time() % 60
    if seconds > 45:  # keep the burst inside one minute window
        time.sleep(61 - seconds)
    target = Target("limit", gateway.url, key=key, model="bench")
    result = run_sync(lambda: closed_loop(target, concurrency=4, requests=int(rpm * 1.5)))
    ok = sum(1 for s in result.samples if s.ok)
    limited = sum(1 for s in result.samples if s.status == 429)
    sent = len(result.samples)
    correct = ok + limited == sent and (ok == rpm if processes == 1 else rpm <= ok <= min(sent, rpm * processes))
    return {"rpm": rpm, "sent": sent, "ok": ok, "limited": limited, "processes": processes, "correct": correct}


# -- profile ------------------------------------------------------------------------------------------


def cmd_profile(args: argparse.Namespace) -> int:
    import psutil

    outputs: dict[str, Any] = {}
    with stack(args, [args.gateway if args.gateway != "both" else "nodelay"]) as (_, gateways):
        gateway = next(iter(gateways.values()))
        proc = psutil.Process(gateway.process.pid)
        RESULTS.mkdir(parents=True, exist_ok=True)
        for stream in (False, True) if args.stream == "both" else (args.stream == "yes",):
            name = "stream" if stream else "json"
            target = Target(
                "gw", gateway.url, key=gateway.key, model="bench-stream" if stream else "bench", stream=stream
            )
            measure(target, concurrency=args.concurrency, requests=args.warmup, engine="python")
            raw = RESULTS / f"profile-{name}.txt"
            cpu0 = sum(proc.cpu_times()[:2])
            spy = py_spy_record(gateway.process.pid, raw, duration=args.duration)
            summary, _, _ = measure(target, concurrency=args.concurrency, duration=args.duration + 1, engine="python")
            spy.wait()
            cpu = sum(proc.cpu_times()[:2]) - cpu0
            per_request = cpu / max(1, summary["ok"]) * 1e6
            if spy.returncode != 0 or not raw.exists():
                raise SystemExit(f"py-spy failed: {spy.stderr.read() if spy.stderr else ''}")
            profile = summarize_collapsed(raw.read_text(), cpu_us_per_request=per_request)
            profile.extra = {
                "load": {k: summary[k] for k in ("rps", "latency_ms", "chunks_per_s", "errors")},
                "cpu_seconds": round(cpu, 3),
                "raw": str(raw),
            }
            _say(
                f"\n{name}: {summary['rps']:.0f} req/s at concurrency {args.concurrency} under py-spy, "
                f"{per_request:.0f} µs CPU per request"
            )
            _say(render_profile(profile, f"profile ({name})"))
            outputs[name] = profile.as_dict()
            if args.svg:
                svg = RESULTS / f"profile-{name}.svg"
                spy = py_spy_record(gateway.process.pid, svg, duration=min(args.duration, 10), fmt="flamegraph")
                measure(target, concurrency=args.concurrency, duration=min(args.duration, 10) + 1, engine="python")
                spy.wait()
                _say(f"flame graph: {svg}")
    path = write_json(
        "profile",
        {"kind": "profile", "args": _args(args), "machine": machine(), **outputs},
        Path(args.json) if args.json else None,
    )
    _say(f"json: {path}")
    return 0


# -- upstream only ----------------------------------------------------------------------------------


def cmd_upstream(args: argparse.Namespace) -> int:
    with StaticUpstream(json_port=args.json_port or 0, sse_port=args.sse_port or 0) as upstream:
        _say(
            f"static upstream (Ctrl-C stops it):\n  JSON  {upstream.json_url}/v1/chat/completions\n"
            f"  SSE   {upstream.sse_url}/v1/chat/completions ({STREAM_CHUNKS} data: chunks + [DONE])"
        )
        with contextlib.suppress(KeyboardInterrupt):
            while upstream.process is not None and upstream.process.poll() is None:
                time.sleep(1)
    return 0


def cmd_all(args: argparse.Namespace) -> int:
    codes = []
    base = dict(
        json_port=args.json_port,
        sse_port=args.sse_port,
        database_url=args.database_url,
        json=None,
        gateway_env=args.gateway_env,
        uvloop=args.uvloop,
        src=args.src,
        ref=args.ref,
    )
    quick = args.quick
    codes.append(
        cmd_overhead(
            argparse.Namespace(
                **base,
                gateway="both",
                rounds=2 if quick else 3,
                latency_seconds=2 if quick else 5,
                throughput_seconds=3 if quick else 8,
                warmup=300,
                scenarios=None,
                other_url=args.other_url,
                other_key=args.other_key,
                other_model=args.other_model,
                other_stream_model=args.other_stream_model,
                other_name=args.other_name,
                other_pid=args.other_pid,
                variant=None,
            )
        )
    )
    codes.append(
        cmd_leak(
            argparse.Namespace(
                **base,
                gateway="nodelay",
                requests=5000 if quick else args.leak_requests,
                warmup=2000 if quick else 5000,
                concurrency=16,
                stream_share=0.25,
                steps=5,
            )
        )
    )
    codes.append(
        cmd_workers(
            argparse.Namespace(
                **base,
                workers=[1, 2],
                duration=5 if quick else 10,
                rounds=1 if quick else 3,
                concurrency=16,
                warmup=500,
                redis_url=args.redis_url,
                limit_rpm=60,
            )
        )
    )
    if not args.no_profile:
        codes.append(
            cmd_profile(
                argparse.Namespace(
                    **base,
                    gateway="nodelay",
                    duration=5 if quick else 10,
                    concurrency=16,
                    warmup=500,
                    stream="both",
                    svg=not quick,
                )
            )
        )
    return max(codes)


# -- argument parsing ----------------------------------------------------------------------------------


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json-port", type=int, help="fixed port for nginx's JSON server (default: a free one)")
    parser.add_argument("--sse-port", type=int, help="fixed port for nginx's SSE server (default: a free one)")
    parser.add_argument("--database-url", help="use this PostgreSQL instead of an embedded one per gateway")
    parser.add_argument("--json", help="write the JSON here instead of bench/results/<kind>-<time>.json")
    parser.add_argument(
        "--gateway-env",
        action="append",
        metavar="NAME=VALUE",
        help="extra environment for the gateway, e.g. INFERHUB_LOG_LEVEL=warning (experiments; repeatable)",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="run the gateway on uvloop via a sitecustomize hook (serve uses uvloop itself since the hot-path "
        "work; this is for older refs)",
    )
    parser.add_argument("--src", help="run the gateway from this source tree's src/ directory (PYTHONPATH)")
    parser.add_argument("--ref", help="run the gateway from `git archive REF src` (e.g. HEAD, a commit, a tag)")


def _gateway_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--gateway",
        choices=["shipped", "nodelay", "both"],
        default=default,
        help="shipped: `inferhub serve` binds its own socket (as installed); nodelay: the harness "
        "binds an IPPROTO_TCP socket and passes it with --listen-fd (only differs for gateways older "
        "than the bind_socket fix, e.g. with --ref); both: measure the two",
    )


def _other_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--other-url", help="another gateway measured in the same run (e.g. a LiteLLM proxy)")
    parser.add_argument("--other-key", help="its API key")
    parser.add_argument("--other-model", default="bench", help="its model name for the JSON upstream")
    parser.add_argument("--other-stream-model", help="its model name for the SSE upstream (default --other-model)")
    parser.add_argument("--other-name", default="other", help="its name in the table")
    parser.add_argument("--other-pid", type=int, help="its process id, for RSS")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m bench.harness",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="load any OpenAI-compatible URL")
    run.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8888")
    run.add_argument("--key", help="API key (Authorization: Bearer)")
    run.add_argument("--model", default="bench")
    run.add_argument("--path", default="/v1/chat/completions")
    run.add_argument("--max-tokens", type=int, default=16)
    run.add_argument("--concurrency", type=int, default=1, help="closed loop: requests in flight")
    run.add_argument("--rate", type=float, help="open loop: requests per second (in-process engine)")
    run.add_argument("--stream", action="store_true")
    run.add_argument("--requests", type=int, help="stop after this many requests")
    run.add_argument("--duration", type=float, help="or after this many seconds (default 10 s)")
    run.add_argument("--warmup", type=int, default=100)
    run.add_argument("--engine", choices=["auto", "python", "wrk"], default="auto")
    run.add_argument("--pid", type=int, help="the server's process id, for RSS before/after")
    run.add_argument("--json", help="write the JSON here")
    run.set_defaults(func=cmd_run)

    over = sub.add_parser("overhead", help="direct vs through Inferhub (and --other-url), interleaved")
    _stack_options(over)
    _gateway_option(over, "shipped")
    _other_options(over)
    over.add_argument(
        "--variant",
        action="append",
        metavar="NAME:SPEC",
        help="another gateway measured in the same rounds; SPEC is a comma list of nodelay, uvloop, ENV=VALUE, "
        "e.g. quiet:nodelay,INFERHUB_LOG_LEVEL=warning (repeatable)",
    )
    over.add_argument("--rounds", type=int, default=3)
    over.add_argument("--latency-seconds", type=float, default=5.0, help="per target per round, concurrency 1")
    over.add_argument("--throughput-seconds", type=float, default=8.0, help="per target per round, concurrency 16")
    over.add_argument("--warmup", type=int, default=300)
    over.add_argument("--scenarios", nargs="*", choices=[s[0] for s in SCENARIOS])
    over.set_defaults(func=cmd_overhead)

    leak = sub.add_parser("leak", help="RSS after warm-up vs after N requests")
    _stack_options(leak)
    _gateway_option(leak, "shipped")
    leak.add_argument("--requests", type=int, default=30000, help="200000 for the budget run")
    leak.add_argument("--warmup", type=int, default=5000)
    leak.add_argument("--concurrency", type=int, default=16)
    leak.add_argument("--stream-share", type=float, default=0.25, help="share of streamed requests")
    leak.add_argument("--steps", type=int, default=10, help="RSS samples along the way")
    leak.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="experiment: trace allocations in the gateway (slow) and print the sites that grew",
    )
    leak.set_defaults(func=cmd_leak)

    workers = sub.add_parser("workers", help="throughput with --workers 1 and 2, limits and metrics checked")
    _stack_options(workers)
    workers.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    workers.add_argument("--duration", type=float, default=10.0)
    workers.add_argument("--rounds", type=int, default=3)
    workers.add_argument("--concurrency", type=int, default=16)
    workers.add_argument("--warmup", type=int, default=500)
    workers.add_argument("--redis-url", default="redis://127.0.0.1:6379/8", help="used if it answers (db flushed)")
    workers.add_argument("--limit-rpm", type=int, default=60)
    workers.set_defaults(func=cmd_workers)

    prof = sub.add_parser("profile", help="py-spy on the gateway under load")
    _stack_options(prof)
    _gateway_option(prof, "shipped")
    prof.add_argument("--duration", type=float, default=10.0)
    prof.add_argument("--concurrency", type=int, default=16)
    prof.add_argument("--warmup", type=int, default=500)
    prof.add_argument("--stream", choices=["no", "yes", "both"], default="both")
    prof.add_argument("--svg", action="store_true", help="also write a flame graph (a second py-spy window)")
    prof.set_defaults(func=cmd_profile)

    up = sub.add_parser("upstream", help="run only the static upstream")
    up.add_argument("--json-port", type=int)
    up.add_argument("--sse-port", type=int)
    up.set_defaults(func=cmd_upstream)

    every = sub.add_parser("all", help="overhead, leak, workers, profile (make bench)")
    _stack_options(every)
    _other_options(every)
    every.add_argument("--quick", action="store_true", help="shorter runs (about 5 minutes)")
    every.add_argument("--leak-requests", type=int, default=200_000, help="the budget: 200,000 after warm-up")
    every.add_argument("--redis-url", default="redis://127.0.0.1:6379/8")
    every.add_argument("--no-profile", action="store_true")
    every.set_defaults(func=cmd_all)
    return top


def main(argv: list[str] | None = None) -> int:
    import signal

    args = parser().parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so nginx and the gateways started here are stopped on the way out.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
