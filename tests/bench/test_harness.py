"""The benchmark harness's own machinery, against the static nginx upstream directly (no Inferhub).

Checks that the report's fields are computed correctly: counts, errors, data: chunks per stream,
ordered percentiles, the direct-vs-gateway arithmetic and the profile attribution. No timing
assertions: numbers are the harness's output, not a test's.
"""

from __future__ import annotations

import pytest
from bench.harness import budget_check, compare
from bench.load import SSECounter, Target, closed_loop, fetch_stream_payloads, open_loop, percentile, run_sync
from bench.load import summarize as summarize_load
from bench.profile import EVENT_LOOP, summarize_collapsed
from bench.report import Row
from bench.upstream import STREAM_CHUNKS, StaticUpstream, canned_stream, canned_stream_payloads, nginx_binary

from bench import wrk

pytestmark = pytest.mark.skipif(
    nginx_binary() is None, reason="nginx is not installed (bash bench/ensure-bench-tools.sh installs it)"
)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    server = StaticUpstream().start(tmp_path_factory.mktemp("nginx"))
    yield server
    server.stop()


def _ordered(latency: dict) -> None:
    assert latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]


def test_canned_stream_is_fifty_chunks_with_usage_last():
    payloads = canned_stream_payloads()
    assert len(payloads) == STREAM_CHUNKS == 50
    assert b'"usage"' in payloads[-1] and b'"choices":[]' in payloads[-1]
    assert b'"finish_reason":"stop"' in payloads[-2]
    assert canned_stream().endswith(b"data: [DONE]\n\n")


@pytest.mark.parametrize("piece", [1, 7, 64, 4096])
def test_sse_counter_counts_across_any_read_boundary(piece):
    body = canned_stream()
    counter = SSECounter()
    for i in range(0, len(body), piece):
        counter.feed(body[i : i + piece])
    assert counter.chunks == STREAM_CHUNKS
    assert counter.done
    assert counter.first is not None


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 90) == 90.0
    assert percentile(values, 99) == 99.0
    assert percentile([3.0], 99) == 3.0
    assert percentile([], 50) is None


def test_closed_loop_json(upstream):
    result = run_sync(lambda: closed_loop(Target("direct", upstream.json_url), concurrency=4, requests=300, warmup=20))
    report = summarize_load(result)
    assert report["requests"] == 300
    assert report["ok"] == 300
    assert report["errors"] == 0 and report["error_kinds"] == {}
    assert report["rps"] > 0
    assert report["chunks"] == 0 and report["ttft_ms"] is None and report["chunks_per_s"] is None
    _ordered(report["latency_ms"])
    assert all(s.status == 200 for s in result.samples)


def test_closed_loop_stream_counts_fifty_chunks_per_stream(upstream):
    target = Target("direct", upstream.sse_url, stream=True)
    result = run_sync(lambda: closed_loop(target, concurrency=4, requests=200))
    report = summarize_load(result)
    assert report["requests"] == report["ok"] == 200
    assert report["errors"] == 0
    assert report["chunks"] == 200 * STREAM_CHUNKS
    assert report["chunks_per_stream"] == {"min": STREAM_CHUNKS, "max": STREAM_CHUNKS}
    assert report["chunks_per_s"] > 0
    ttft = report["ttft_ms"]
    assert ttft["p50"] <= ttft["p90"] <= ttft["p99"]
    assert all(s.ttft is not None and 0 <= s.ttft <= s.latency for s in result.samples)
    _ordered(report["latency_ms"])


def test_open_loop_sends_the_scheduled_count(upstream):
    result = run_sync(lambda: open_loop(Target("direct", upstream.json_url), rate=1000, requests=200))
    report = summarize_load(result)
    assert report["requests"] == report["ok"] == 200
    assert report["errors"] == 0
    _ordered(report["latency_ms"])


def test_errors_are_counted_by_kind(upstream):
    target = Target("direct", upstream.json_url, path="/no/such/route")
    report = summarize_load(run_sync(lambda: closed_loop(target, concurrency=2, requests=50)))
    assert report["requests"] == 50
    assert report["ok"] == 0
    assert report["errors"] == 50
    assert report["error_kinds"] == {"http_404": 50}
    assert report["latency_ms"]["p50"] is None


def test_refused_connections_are_errors_not_crashes():
    report = summarize_load(run_sync(lambda: closed_loop(Target("dead", "http://127.0.0.1:9"), requests=5)))
    assert report["requests"] == report["errors"] == 5
    assert set(report["error_kinds"]) == {"ConnectionRefusedError"}


def test_stream_payloads_are_the_canned_bytes(upstream):
    payloads = run_sync(lambda: fetch_stream_payloads(Target("direct", upstream.sse_url, stream=True)))
    assert payloads == canned_stream_payloads()


@pytest.mark.skipif(not wrk.available(), reason="wrk is not installed (bash bench/ensure-bench-tools.sh installs it)")
def test_wrk_summary_has_the_same_shape(upstream):
    plain = wrk.run(Target("direct", upstream.json_url), concurrency=2, duration=1)
    assert plain["errors"] == 0 and plain["ok"] == plain["requests"] > 0
    assert plain["latency_ms"]["p50"] <= plain["latency_ms"]["p90"] <= plain["latency_ms"]["p99"]
    streamed = wrk.run(Target("direct", upstream.sse_url, stream=True), concurrency=2, duration=1)
    assert streamed["errors"] == 0
    assert streamed["chunks_per_stream"] == {"mean": float(STREAM_CHUNKS)}
    assert streamed["chunks"] == streamed["ok"] * STREAM_CHUNKS


def test_rows_merge_rounds_and_compare_with_direct(upstream):
    rows = {}
    for name, url in (("direct", upstream.json_url), ("inferhub", upstream.json_url)):
        row = Row("c1 json", name, "raw-http/1.1")
        for _ in range(2):
            result = run_sync(lambda url=url, name=name: closed_loop(Target(name, url), requests=100))
            row.add(summarize_load(result), result, (1 << 20, 2 << 20))
        rows[name] = row.as_dict()
    assert rows["direct"]["requests"] == rows["direct"]["ok"] == 200
    assert len(rows["direct"]["rounds"]) == 2
    assert rows["direct"]["rss_before_mb"] == 1.0 and rows["direct"]["rss_after_mb"] == 2.0
    assert rows["direct"]["p50"] <= rows["direct"]["p90"] <= rows["direct"]["p99"]
    (comparison,) = compare(list(rows.values()))
    assert comparison["target"] == "inferhub"
    assert comparison["added_p50_ms"] == pytest.approx(rows["inferhub"]["p50"] - rows["direct"]["p50"], abs=1e-3)
    assert comparison["throughput_ratio"] == pytest.approx(rows["inferhub"]["rps"] / rows["direct"]["rps"], rel=1e-3)


def test_budget_statuses():
    def row(scenario, target, **values):
        base = {"scenario": scenario, "target": target, "rps": None, "p50": None, "p90": None, "p99": None,
                "ttft_p50": None, "chunks_per_s": None}  # fmt: skip
        return {**base, **values}

    rows = [
        row("c1 json", "direct", rps=10000, p50=0.1, p90=0.1, p99=0.2),
        row("c1 json", "inferhub", rps=900, p50=0.5, p90=0.8, p99=3.0),
        row("c16 json", "direct", rps=50000),
        row("c16 json", "inferhub", rps=3500),
        row("c16 stream", "direct", chunks_per_s=1e6),
        row("c16 stream", "inferhub", chunks_per_s=15000),
    ]
    result = {b["budget"]: b["status"] for b in budget_check(rows, {"inferhub": "identical"})}
    assert result["added latency p50, c=1 (ms)"] == "PASS"  # 0.4 ms added
    assert result["added latency p99, c=1 (ms)"] == "MISS"  # 2.8 ms added
    assert result["throughput c=16 (req/s)"] == "PASS"
    assert result["SSE chunks/s forwarded, c=16"] == "MISS"
    assert result["TTFT added p50, c=1 (ms)"] == "n/a"
    assert result["chunks passed through unchanged"] == "PASS"


def test_profile_attribution():
    collapsed = "\n".join([
        "run (inferhub/server.py:1);_run_once (asyncio/base_events.py:1);send (aiohttp/client_reqrep.py:1);"
        "write (asyncio/selector_events.py:1) 4",
        "run (inferhub/server.py:1);request (inferhub/backends/upstream_client.py:1) 2",
        "run (inferhub/server.py:1);__call__ (inferhub/app.py:1);uuid4 (uuid.py:1) 2",
        "run (inferhub/server.py:1);_run_once (asyncio/base_events.py:1) 1",
        "_worker (concurrent/futures/thread.py:1);insert_many (inferhub/store/_usage.py:1);"
        "execute (sqlalchemy/engine/base.py:1) 1",
    ])  # fmt: skip
    summary = summarize_collapsed(collapsed, cpu_us_per_request=1000.0)
    assert summary.samples == 10
    parts = {c["component"]: c for c in summary.as_dict()["components"]}
    assert parts["upstream client (UpstreamClient, aiohttp; httpx)"]["samples"] == 6
    assert parts["upstream client (UpstreamClient, aiohttp; httpx)"]["cpu_us_per_request"] == 600.0
    assert parts["Inferhub middlewares (RequestId, BodySizeLimit, HttpMetrics)"]["samples"] == 2
    assert parts[EVENT_LOOP]["samples"] == 1
    assert parts["usage/stats writes (SQLAlchemy, psycopg; threads)"]["samples"] == 1
