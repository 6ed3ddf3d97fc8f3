"""RAG at scale: ingestion throughput through the real embedding path, then search latency at N chunks.

    python -m bench.rag_bench --chunks 100000

Starts its own embedded PostgreSQL (with pgvector) and an ``inferhub serve`` with the embedded
all-MiniLM-L6-v2, then:

1. embedding throughput: ``--sample`` chunk texts through ``POST /v1/embeddings`` in batches of 64;
2. ingestion throughput: the same texts uploaded as documents (``--sections`` one-chunk sections each) through
   ``POST /v1/collections/{name}/documents``; timed from the first upload until every document is ``ready``
   (extraction, chunking, embeddings through the gateway, the insert into the HNSW-indexed table);
3. bulk load: the other ``--chunks - --sample`` chunks go straight into PostgreSQL with ``COPY``; their
   texts come from the same generator (``bench/corpus``) and their vectors are the sample's real vectors
   blended (two random sample vectors, the second weighted 0 to 0.5) plus Gaussian noise (``--noise`` per
   dimension), then normalised: spread like real embeddings rather than uniform noise or tight clusters of
   near-duplicates. The collection's HNSW index is dropped first and then built
   again over everything with the statement ``RagStore`` uses (timed);
4. search latency: ``--queries`` generated questions (answers in the API-ingested sample) per mode
   (vector, keyword, hybrid), one at a time, through ``POST /v1/collections/{name}/search`` (end to end:
   the query's embedding plus the database) and through ``RagStore.search`` with the query vector computed
   beforehand (the database alone); p50 / p95 / mean, plus recall@5 of the question's entity;
5. the index's own recall: exact nearest neighbours (no index) against the HNSW answers at
   ``hnsw.ef_search`` 40, 100 (what Inferhub sets) and 400; and how many chunks each question's keyword
   query (OR of its terms) matches, which is what ``ts_rank_cd`` has to rank.

Prints a summary and writes it as JSON with ``--json PATH``. Numbers depend on the machine; nothing
asserts on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg

from bench.corpus import build, chunk_texts
from inferhub.runtime.embedded_postgres import EmbeddedPostgres

KEY = "ih-bench-rag-key-0123456789"
BIN = Path(sys.executable).parent
MODEL = "all-minilm-l6-v2"
MODES = ("vector", "keyword", "hybrid")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(predicate, timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {
        "p50_ms": round(pick(0.50) * 1000, 2),
        "p95_ms": round(pick(0.95) * 1000, 2),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2),
        "n": len(ordered),
    }


def _vector_literal(row: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.6f}" for x in row.tolist()) + "]"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="inferhub-rag-bench-"))
        self.pg = EmbeddedPostgres(self.root / "pg")
        self.database_url = ""
        self.api: subprocess.Popen | None = None
        self.url = ""
        self.http: httpx.Client | None = None
        self.results: dict[str, Any] = {
            "kind": "rag",
            "args": vars(args),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        }

    # -- set-up ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self.database_url = self.pg.start()
        port = _free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("INFERHUB_")},
            "INFERHUB_HOME": str(self.root),
            "INFERHUB_CONFIG_FILE": str(self.root / "inferhub.yaml"),
            "INFERHUB_DATABASE_URL": self.database_url,
            "INFERHUB_API_KEY": KEY,
            "INFERHUB_HOST": "127.0.0.1",
            "INFERHUB_PORT": str(port),
            "INFERHUB_LOCAL_MODELS": "true",
            "INFERHUB_LOG_LEVEL": "warning",
            "HF_HUB_OFFLINE": "1",
        }
        self.url = f"http://127.0.0.1:{port}"
        log = (self.root / "serve.log").open("wb")
        self.api = subprocess.Popen([str(BIN / "inferhub"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        _wait(lambda: _ready(self.url), 300, "inferhub serve")
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=600)

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.api is not None and self.api.poll() is None:
            self.api.terminate()
            self.api.wait(60)
        self.pg.stop()
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)
        else:
            print(f"kept {self.root}")

    # -- phases ---------------------------------------------------------------------------------------------

    def embedding_throughput(self, texts: list[str]) -> None:
        started = time.perf_counter()
        for i in range(0, len(texts), 64):
            reply = self.http.post("/v1/embeddings", json={"model": MODEL, "input": texts[i : i + 64]})
            reply.raise_for_status()
        elapsed = time.perf_counter() - started
        self.results["embeddings"] = {
            "texts": len(texts),
            "seconds": round(elapsed, 2),
            "texts_per_s": round(len(texts) / elapsed, 1),
        }
        print(f"embeddings  {len(texts)} texts via /v1/embeddings (batches of 64): {len(texts) / elapsed:.1f}/s")

    def ingest_sample(self, pairs: list[tuple[str, str]]) -> None:
        """Upload the sample as documents of ``--sections`` one-chunk sections; time until all are ready."""
        self.collection = self.http.post("/v1/collections", json={"name": "bench", "chunk_size": 256}).json()
        name = self.collection["name"]
        size = self.args.sections
        documents = []
        for i in range(0, len(pairs), size):
            body = "\n\n".join(f"## {title}\n\n{text}" for title, text in pairs[i : i + size])
            documents.append({"text": body, "title": f"bench document {i // size}", "format": "markdown"})
        started = time.perf_counter()

        def upload(doc: dict[str, Any]) -> None:
            self.http.post(f"/v1/collections/{name}/documents", json=doc).raise_for_status()

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(upload, documents))
        uploaded = time.perf_counter() - started

        def done() -> bool:
            rows = self.http.get(f"/v1/collections/{name}/documents", params={"limit": 1000}).json()["data"]
            failed = [r for r in rows if r["status"] == "failed"]
            if failed:
                raise RuntimeError(f"ingestion failed: {failed[0]['error']}")
            return sum(r["status"] == "ready" for r in rows) == len(documents)

        _wait(done, 3600, "the sample to be ingested", interval=0.5)
        elapsed = time.perf_counter() - started
        with psycopg.connect(self.database_url) as conn:
            chunks = conn.execute("SELECT count(*) FROM chunks WHERE collection_id = %s", (self.collection["id"],))
            count = chunks.fetchone()[0]
        self.total = count
        self.results["ingestion"] = {
            "documents": len(documents),
            "chunks": count,
            "upload_seconds": round(uploaded, 2),
            "seconds": round(elapsed, 2),
            "chunks_per_s": round(count / elapsed, 1),
        }
        print(
            f"ingestion   {count} chunks in {len(documents)} documents via the API, upload to ready: "
            f"{elapsed:.1f}s -> {count / elapsed:.1f} chunks/s"
        )

    def bulk_load(self, pairs: list[tuple[str, str]]) -> None:
        cid, dims = self.collection["id"], self.collection["dimensions"]
        rng = np.random.default_rng(self.args.seed)
        with psycopg.connect(self.database_url) as conn:
            rows = conn.execute("SELECT embedding::text FROM chunks WHERE collection_id = %s", (cid,)).fetchall()
            sample = np.array([json.loads(r[0]) for r in rows], dtype=np.float32)
            started = time.perf_counter()
            conn.execute(f"DROP INDEX IF EXISTS ix_chunks_hnsw_{cid}")
            per_doc = self.args.sections
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY documents (id, collection_id, title, content, content_hash, mime, status, chunk_count) "
                    "FROM STDIN"
                ) as copy:
                    for d in range(0, len(pairs), per_doc):
                        group = pairs[d : d + per_doc]
                        content = "\n\n".join(t for _, t in group).encode()
                        digest = f"bulk-{d:08d}".ljust(64, "0")
                        copy.write_row(
                            (
                                f"doc_bulk_{d:08d}",
                                cid,
                                f"bulk {d}",
                                content,
                                digest,
                                "text/markdown",
                                "ready",
                                len(group),
                            )
                        )
                with cur.copy(
                    "COPY chunks (document_id, collection_id, ordinal, text, section, metadata, embedding) FROM STDIN"
                ) as copy:
                    for start in range(0, len(pairs), 5000):
                        block = pairs[start : start + 5000]
                        # A blend of two real vectors plus noise: spread like real data, not tight clusters
                        # of near-duplicates (which HNSW handles worse than real data).
                        first = sample[rng.integers(0, len(sample), len(block))]
                        second = sample[rng.integers(0, len(sample), len(block))]
                        weight = rng.uniform(0.0, 0.5, (len(block), 1)).astype(np.float32)
                        vectors = first * (1 - weight) + second * weight
                        vectors += rng.normal(0.0, self.args.noise, (len(block), dims)).astype(np.float32)
                        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                        for i, ((title, text), vector) in enumerate(zip(block, vectors, strict=True)):
                            n = start + i
                            copy.write_row(
                                (
                                    f"doc_bulk_{n - n % per_doc:08d}",
                                    cid,
                                    n % per_doc,
                                    text,
                                    title,
                                    "{}",
                                    _vector_literal(vector),
                                )
                            )
            conn.commit()
            loaded = time.perf_counter() - started
            print(f"bulk load   {len(pairs)} chunks with COPY (blended sample vectors): {loaded:.1f}s")
            conn.execute("SET maintenance_work_mem = '1GB'")
            started = time.perf_counter()
            conn.execute(
                f"CREATE INDEX ix_chunks_hnsw_{cid} ON chunks USING hnsw "
                f"((embedding::vector({dims})) vector_cosine_ops) WHERE collection_id = {cid}"
            )
            conn.commit()
            built = time.perf_counter() - started
            conn.execute("ANALYZE chunks")
            conn.commit()
            total = conn.execute("SELECT count(*) FROM chunks WHERE collection_id = %s", (cid,)).fetchone()[0]
            size = conn.execute(f"SELECT pg_relation_size('ix_chunks_hnsw_{cid}')").fetchone()[0]
            table = conn.execute("SELECT pg_total_relation_size('chunks')").fetchone()[0]
        self.total = total
        self.results["bulk"] = {
            "chunks": len(pairs),
            "copy_seconds": round(loaded, 2),
            "hnsw_build_seconds": round(built, 2),
            "hnsw_index_mb": round(size / 2**20, 1),
            "chunks_table_mb": round(table / 2**20, 1),
            "total_chunks": total,
        }
        print(
            f"hnsw index  over {total} chunks built in {built:.1f}s ({size / 2**20:.0f} MB; "
            f"chunks table with indexes {table / 2**20:.0f} MB)"
        )

    def explain(self, vector: list[float]) -> str:
        cid, dims = self.collection["id"], self.collection["dimensions"]
        literal = "[" + ",".join(f"{x:.6f}" for x in vector) + "]"
        with psycopg.connect(self.database_url) as conn:
            conn.execute("SET hnsw.ef_search = 100")
            plan = conn.execute(
                f"EXPLAIN SELECT id FROM chunks c WHERE c.collection_id = {cid} "
                f"ORDER BY c.embedding::vector({dims}) <=> '{literal}'::vector({dims}) LIMIT 50"
            ).fetchall()
        return "\n".join(r[0] for r in plan)

    def latency(self, questions: list) -> None:
        from inferhub.store.database import Database
        from inferhub.store.rag import RagStore

        name = self.collection["name"]
        texts = [q.text for q in questions]
        vectors: list[list[float]] = []
        for i in range(0, len(texts), 64):
            reply = self.http.post("/v1/embeddings", json={"model": MODEL, "input": texts[i : i + 64]}).json()
            vectors.extend(d["embedding"] for d in sorted(reply["data"], key=lambda d: d["index"]))
        plan = self.explain(vectors[0])
        uses_index = f"ix_chunks_hnsw_{self.collection['id']}" in plan
        print(f"vector plan uses the HNSW index: {uses_index}")
        collection = self.http.get(f"/v1/collections/{name}").json()
        store = RagStore(Database(self.database_url))
        out: dict[str, Any] = {"questions": len(questions), "vector_plan_uses_hnsw": uses_index}
        warmup = min(10, len(questions))
        for mode in MODES:
            api, db, found = [], [], 0
            for i, question in enumerate(questions):
                started = time.perf_counter()
                reply = self.http.post(
                    f"/v1/collections/{name}/search", json={"query": question.text, "mode": mode, "top_k": 5}
                )
                elapsed = time.perf_counter() - started
                reply.raise_for_status()
                if any(h["section"] and question.entity in h["section"] for h in reply.json()["data"]):
                    found += 1
                started = time.perf_counter()
                store.search(collection, query=question.text, embedding=vectors[i], mode=mode, top_k=5)
                db_elapsed = time.perf_counter() - started
                if i >= warmup or len(questions) <= warmup:
                    api.append(elapsed)
                    db.append(db_elapsed)
            out[mode] = {"api": _percentiles(api), "database": _percentiles(db), "recall_at_5": found / len(questions)}
            a, d = out[mode]["api"], out[mode]["database"]
            print(
                f"search {mode:8} API p50 {a['p50_ms']:7.1f} ms  p95 {a['p95_ms']:7.1f} ms   "
                f"database p50 {d['p50_ms']:7.1f} ms  p95 {d['p95_ms']:7.1f} ms   "
                f"recall@5 {found / len(questions):.2f}"
            )
        out["vector_exact"] = self.exact(questions, vectors, store, collection)
        out["keyword_matches"] = self.keyword_matches(questions)
        self.results["search"] = out

    def exact(self, questions: list, vectors: list[list[float]], store, collection: dict) -> dict[str, Any]:
        """Exact nearest neighbours (no index) for the same questions: the model's recall versus the index's."""
        cid, dims = self.collection["id"], self.collection["dimensions"]
        found = 0
        overlap = {40: 0, 100: 0, 400: 0}
        query = (
            f"SELECT id, section FROM chunks WHERE collection_id = {int(cid)} "
            f"ORDER BY embedding::vector({dims}) <=> %s::vector({dims}) LIMIT 5"
        )
        with (
            psycopg.connect(self.database_url, autocommit=True) as exact,
            psycopg.connect(self.database_url, autocommit=True) as approx,
        ):
            exact.execute("SET enable_indexscan = off")
            exact.execute("SET enable_bitmapscan = off")
            for question, vector in zip(questions, vectors, strict=True):
                literal = "[" + ",".join(f"{x:.7g}" for x in vector) + "]"
                rows = exact.execute(query, (literal,)).fetchall()
                found += any(r[1] and question.entity in r[1] for r in rows)
                truth = {r[0] for r in rows}
                for ef in overlap:
                    approx.execute(f"SET hnsw.ef_search = {ef}")
                    overlap[ef] += len(truth & {r[0] for r in approx.execute(query, (literal,)).fetchall()})
        result = {
            "recall_at_5": found / len(questions),
            "hnsw_share_of_exact_top5": {ef: round(n / (5 * len(questions)), 3) for ef, n in overlap.items()},
        }
        shares = ", ".join(f"ef_search {ef}: {share:.1%}" for ef, share in result["hnsw_share_of_exact_top5"].items())
        print(f"vector exact (no index) recall@5 {result['recall_at_5']:.2f}; HNSW finds of the exact top 5: {shares}")
        return result

    def keyword_matches(self, questions: list) -> dict[str, Any]:
        """How many chunks each question's keyword query matches (OR of its terms): what ts_rank_cd ranks."""
        cid = self.collection["id"]
        counts = []
        with psycopg.connect(self.database_url) as conn:
            for question in questions:
                counts.append(
                    conn.execute(
                        "WITH q AS (SELECT replace(websearch_to_tsquery('english', %s)::text, '&', '|') AS expr) "
                        "SELECT count(*) FROM chunks c, q WHERE c.collection_id = %s AND q.expr <> '' "
                        "AND c.tsv @@ to_tsquery('english', q.expr)",
                        (question.text, cid),
                    ).fetchone()[0]
                )
        counts.sort()
        result = {"median": counts[len(counts) // 2], "p95": counts[int(0.95 * (len(counts) - 1))], "max": counts[-1]}
        print(
            f"keyword     a question's terms (OR) match {result['median']} chunks (median), "
            f"{result['p95']} (p95), {result['max']} (max) of {self.total}"
        )
        return result


class _Question:
    def __init__(self, text: str, entity: str) -> None:
        self.text = text
        self.entity = entity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000, help="chunks in the collection at the end")
    parser.add_argument("--sample", type=int, default=2_000, help="chunks ingested through the API (real vectors)")
    parser.add_argument("--sections", type=int, default=50, help="one-chunk sections per uploaded document")
    parser.add_argument("--queries", type=int, default=200, help="questions per search mode")
    parser.add_argument("--noise", type=float, default=0.02, help="per-dimension noise of the bulk vectors")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, logs)")
    args = parser.parse_args()
    if not 0 < args.sample <= args.chunks:
        parser.error("--sample must be between 1 and --chunks")

    pairs = list(chunk_texts(args.chunks, seed=args.seed))
    sample, rest = pairs[: args.sample], pairs[args.sample :]
    # Questions about entities whose paragraphs are all in the API-ingested sample (real embeddings); the
    # generator yields entities in order, so those are the first ones.
    titles = list(dict.fromkeys(title for title, _ in sample))
    complete = len(titles) - (1 if rest and rest[0][0] == titles[-1] else 0)
    documents, questions = build(seed=args.seed, documents=complete, questions=min(args.queries, complete))
    entity = {d.key: d.entity for d in documents}
    asked = [_Question(q.text, entity[q.document_key]) for q in questions]

    bench = Bench(args)
    print(
        f"RAG bench: {args.chunks} chunks ({args.sample} through the API), {len(asked)} questions per mode, "
        f"{os.cpu_count()} CPUs; temporary directory {bench.root}"
    )
    try:
        bench.start()
        bench.embedding_throughput([text for _, text in sample])
        bench.ingest_sample(sample)
        if rest:
            bench.bulk_load(rest)
        bench.latency(asked)
    finally:
        bench.stop()
    if args.json:
        args.json.write_text(json.dumps(bench.results, indent=2, default=str))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
