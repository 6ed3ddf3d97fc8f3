"""Chat tokens per second through Inferhub versus the embedded llama.cpp server called directly.

Same prompt, same ``max_tokens``, temperature 0, requests interleaved (direct, gateway, direct, …)
so both see the same machine load. The direct URL is read from the gateway's ``/health``.

    python -m bench.tokens_per_second --url http://127.0.0.1:8888 --key "$INFERHUB_API_KEY"
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

PROMPT = "Write a short paragraph about the history of the printing press."


def _one(client: httpx.Client, url: str, headers: dict[str, str], model: str, max_tokens: int) -> tuple[int, float]:
    body = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": max_tokens,
            "temperature": 0}  # fmt: skip
    started = time.perf_counter()
    reply = client.post(f"{url}/v1/chat/completions", json=body, headers=headers)
    elapsed = time.perf_counter() - started
    reply.raise_for_status()
    return reply.json()["usage"]["completion_tokens"], elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8888")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()

    health = httpx.get(f"{args.url}/health", headers={"Authorization": f"Bearer {args.key}"}, timeout=10).json()
    direct = next(b["endpoint_url"] for b in health["backends"] if b["model"] == args.model)
    gateway_headers = {"Authorization": f"Bearer {args.key}"}
    results: dict[str, list[tuple[int, float]]] = {"direct": [], "gateway": []}
    with httpx.Client(timeout=300) as client:
        _one(client, direct, {}, args.model, 8)  # warm-up
        for _ in range(args.rounds):
            results["direct"].append(_one(client, direct, {}, args.model, args.max_tokens))
            results["gateway"].append(_one(client, args.url, gateway_headers, args.model, args.max_tokens))

    print(f"model={args.model} max_tokens={args.max_tokens} rounds={args.rounds} (interleaved)")
    print(f"{'path':<8} {'tokens/s (median)':>18} {'tokens/s (mean)':>16} {'latency p50 ms':>15}")
    for name, rows in results.items():
        rates = [tokens / seconds for tokens, seconds in rows]
        latency = statistics.median(seconds for _, seconds in rows) * 1000
        print(f"{name:<8} {statistics.median(rates):>18.1f} {statistics.mean(rates):>16.1f} {latency:>15.1f}")
    direct_rate = statistics.median(t / s for t, s in results["direct"])
    gateway_rate = statistics.median(t / s for t, s in results["gateway"])
    print(f"gateway/direct: {gateway_rate / direct_rate:.3f}")


if __name__ == "__main__":
    main()
