"""Throughput with ``wrk`` (C, epoll, LuaJIT): a closed loop that never becomes the bottleneck.

The generated Lua script sets the POST body and headers, counts ``data:`` events of streamed answers
(``response()`` is only defined for streams: defining it makes wrk keep and scan each body, which
slows wrk itself to about 6,000 streams/s, far above what the gateway serves), and prints one JSON
line from ``done()`` with the request count, errors and latency percentiles (µs, converted to ms here).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.load import Target

MARK = "WRKJSON "

_LUA = r"""
wrk.method = "POST"
wrk.body = {body}
{headers}
local threads = {{}}
local count_chunks = {stream}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  chunks = 0
  responses = 0
  bad_streams = 0
end

if count_chunks then
  function response(status, headers, body)
    responses = responses + 1
    if status == 200 then
      local _, n = string.gsub(body, "\ndata: ", "")
      if string.sub(body, 1, 6) == "data: " then n = n + 1 end
      if string.find(body, "data: [DONE]", 1, true) then n = n - 1 else bad_streams = bad_streams + 1 end
      chunks = chunks + n
    end
  end
end

function done(summary, latency, requests)
  local total_chunks, total_bad, total_responses = 0, 0, 0
  for _, t in ipairs(threads) do
    total_chunks = total_chunks + (t:get("chunks") or 0)
    total_bad = total_bad + (t:get("bad_streams") or 0)
    total_responses = total_responses + (t:get("responses") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    '{mark}{{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"chunks":%d,"bad_streams":%d,"responses":%d,"lat_p50":%d,"lat_p90":%d,"lat_p99":%d,' ..
    '"lat_p999":%d,"lat_max":%d,"lat_mean":%.2f}}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    total_chunks, total_bad, total_responses, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def _lua_string(data: bytes) -> str:
    return "[==[" + data.decode() + "]==]"


def script(target: Target) -> str:
    headers = "\n".join(f'wrk.headers["{k}"] = {_lua_string(v.encode())}' for k, v in target.headers().items())
    return _LUA.format(
        body=_lua_string(target.body()), headers=headers, stream="true" if target.stream else "false", mark=MARK
    )


def run(
    target: Target, *, concurrency: int, duration: float, threads: int = 1, timeout: float = 10.0
) -> dict[str, Any]:
    """One wrk run of ``duration`` seconds; a summary in the same shape as :func:`bench.load.summarize`."""
    if not available():
        raise RuntimeError("wrk is not installed: run `bash bench/ensure-bench-tools.sh` (apt package wrk)")
    threads = max(1, min(threads, concurrency))
    with tempfile.TemporaryDirectory(prefix="inferhub-bench-wrk-") as tmp:
        lua = Path(tmp) / "bench.lua"
        lua.write_text(script(target))
        command = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{timeout:g}s",
            "-s",
            str(lua),
            target.endpoint(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + timeout + 60)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARK)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:] or done.stdout[-500:]}")
    raw = json.loads(line[len(MARK) :])
    seconds = raw["duration_us"] / 1e6 or 1e-9
    socket_errors = {k: raw[k] for k in ("connect", "read", "write", "timeout") if raw[k]}
    if raw["status"]:
        socket_errors["http_4xx_5xx"] = raw["status"]
    if raw["bad_streams"]:
        socket_errors["stream_incomplete"] = raw["bad_streams"]
    errors = sum(socket_errors.values())
    ok = max(0, raw["requests"] - raw["status"] - raw["bad_streams"])
    streams = raw["responses"] - raw["status"] if target.stream else 0
    chunks = raw["chunks"] if target.stream else 0

    def ms(us: float) -> float:
        return round(us / 1000, 4)

    return {
        "engine": f"wrk -t{threads}",
        "requests": raw["requests"],
        "ok": ok,
        "errors": errors,
        "error_kinds": socket_errors,
        "duration_s": round(seconds, 4),
        "rps": round(ok / seconds, 2),
        "latency_ms": {
            "p50": ms(raw["lat_p50"]),
            "p90": ms(raw["lat_p90"]),
            "p99": ms(raw["lat_p99"]),
            "max": ms(raw["lat_max"]),
            "mean": ms(raw["lat_mean"]),
        },
        "ttft_ms": None,
        "chunks": chunks,
        "chunks_per_stream": {"mean": round(chunks / streams, 2)} if streams > 0 and chunks else None,
        "chunks_per_s": round(chunks / seconds, 1) if chunks else None,
        "late": 0,
        "bytes": raw["bytes"],
    }
