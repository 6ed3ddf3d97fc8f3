"""RagService: ingestion (extract → chunk → embed → store) and retrieval, through the gateway's own pipeline.

Embeddings are requested like any client's, through ``Gateway.run("embeddings", …)``:
the embedded MiniLM by default, a TEI or Ollama embedding backend in production,
with routing, failover, metrics and usage as everywhere else.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog

from inferhub.gateway.pipeline import Gateway, RequestMeta
from inferhub.gateway.service import Call, Caller, InferenceService, RequestInfo
from inferhub.rag._chunking import chunk_sections
from inferhub.rag.extract import extract
from inferhub.store.rag import Hit, RagStore

log = structlog.get_logger("inferhub.rag")

EMBED_BATCH = 64
# Below this cosine similarity (all-MiniLM-L6-v2 scale) a vector hit is not evidence of anything.
RELEVANCE_THRESHOLD = 0.25
# The usage record's endpoint of a search that is one step of a larger request (an answer, a chat).
RETRIEVAL_ENDPOINT = "rag.retrieval"


class RagService:
    def __init__(self, store: RagStore, gateway: Gateway, metrics: Any = None) -> None:
        self.store = store
        self.gateway = gateway
        self.metrics = metrics

    async def embed(self, model: str, texts: list[str], meta: RequestMeta) -> tuple[list[list[float]], int]:
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), EMBED_BATCH):
            _, result = await self.gateway.run(
                "embeddings", {"model": model, "input": texts[start : start + EMBED_BATCH]}, meta
            )
            vectors.extend(item["embedding"] for item in sorted(result["data"], key=lambda d: d["index"]))
            tokens += (result.get("usage") or {}).get("prompt_tokens", 0) or 0
        return vectors, tokens

    async def ingest(self, document_id: str, meta: RequestMeta) -> dict[str, Any]:
        """Turn a stored document into chunks; its old chunks are replaced in one transaction."""
        started = time.perf_counter()
        document = await asyncio.to_thread(self.store.get_document, document_id, with_content=True)
        if document is None:
            raise LookupError(f"document {document_id} no longer exists")
        collection = await asyncio.to_thread(self.store.get_collection_by_id, document["collection_id"])
        await asyncio.to_thread(self.store.set_status, document_id, "processing")
        try:
            sections = await asyncio.to_thread(extract, document["content"], document["mime"])
            chunks = chunk_sections(sections, size=collection["chunk_size"], overlap=collection["chunk_overlap"])
            texts = [_embedding_text(document["title"], c.section, c.text) for c in chunks]
            vectors, tokens = await self.embed(collection["embedding_model"], texts, meta) if texts else ([], 0)
            rows = [
                {
                    "ordinal": c.ordinal,
                    "text": c.text,
                    "section": c.section,
                    "page": c.page,
                    "metadata": document["metadata"],
                    "embedding": v,
                }
                for c, v in zip(chunks, vectors, strict=True)
            ]
            count = await asyncio.to_thread(self.store.replace_chunks, document_id, collection["id"], rows)
        except Exception as exc:
            await asyncio.to_thread(self.store.set_status, document_id, "failed", str(exc)[:500])
            raise
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.rag_ingest.observe(elapsed)
            self.metrics.rag_chunks.inc(count)
        log.info("document_ingested", document=document_id, chunks=count, seconds=round(elapsed, 3))
        return {
            "document_id": document_id,
            "chunks": count,
            "embedding_tokens": tokens,
            "usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens},
        }

    async def search(
        self, collections: list[dict], query: str, *, top_k: int, mode: str, filter: dict | None, meta: RequestMeta
    ) -> list[Hit]:
        hits, _ = await self.search_with_usage(collections, query, top_k=top_k, mode=mode, filter=filter, meta=meta)
        return hits

    async def search_with_usage(
        self, collections: list[dict], query: str, *, top_k: int, mode: str, filter: dict | None, meta: RequestMeta
    ) -> tuple[list[Hit], int]:
        """The hits, and the embedding tokens the query cost (for the caller's usage record)."""
        started = time.perf_counter()
        hits: list[Hit] = []
        by_model: dict[str, list[float]] = {}
        tokens = 0
        for collection in collections:
            embedding = None
            if mode != "keyword":
                model = collection["embedding_model"]
                if model not in by_model:
                    vectors, used = await self.embed(model, [query], meta)
                    by_model[model], tokens = vectors[0], tokens + used
                embedding = by_model[model]
            found = await asyncio.to_thread(
                lambda c=collection, e=embedding: self.store.search(
                    c, query=query, embedding=e, mode=mode, top_k=top_k, filter=filter
                )
            )
            hits.extend(found)
        hits.sort(key=lambda h: h.score, reverse=True)
        if self.metrics is not None:
            self.metrics.rag_query.labels(mode).observe(time.perf_counter() - started)
        return hits[:top_k], tokens


async def metered_search(inference: InferenceService, rag: RagService, call: Call, collections: list[dict],
                         query: str, *, top_k: int, mode: str, filter: dict | None) -> list[Hit]:  # fmt: skip
    """Search with the caller's limits and a usage record: embedding the query is work done for the key.

    ``call`` names the caller and the record's endpoint (``rag.retrieval`` for the retrieval step of
    ``/v1/rag/query``, chat with ``collections`` and the dashboard playground); its ``model`` is the
    embedding model, billed for the query's tokens.
    """
    async with inference.metered(call) as work:
        hits, work.prompt_tokens = await rag.search_with_usage(collections, query, top_k=top_k, mode=mode,
                                                               filter=filter, meta=work.meta)  # fmt: skip
    return hits


def retrieval_call(caller: Caller, collections: list[dict], info: RequestInfo,
                   endpoint: str = RETRIEVAL_ENDPOINT) -> Call:  # fmt: skip
    """The ``Call`` that meters a search of ``collections`` (billed to their first one's embedding model)."""
    return Call(caller, "retrieval", {"model": collections[0]["embedding_model"]}, endpoint, info=info)


def relevant(hits: list[Hit]) -> list[Hit]:
    """Hits worth answering from: a vector similarity above the threshold, or a keyword match."""
    return [h for h in hits if (h.vector_score or 0) >= RELEVANCE_THRESHOLD or (h.keyword_score or 0) > 0]


def _embedding_text(title: str, section: str | None, body: str) -> str:
    """Title and section travel with each chunk, so a chunk is findable by what it belongs to."""
    heading = " — ".join(part for part in (title, section) if part)
    return f"{heading}\n{body}" if heading else body


def build_messages(question: str, hits: list[Hit]) -> list[dict[str, str]]:
    context = "\n\n".join(
        f"[{n}] {h.title}"
        + (f", {h.section}" if h.section else "")
        + (f", page {h.page}" if h.page else "")
        + f"\n{h.text}"
        for n, h in enumerate(hits, start=1)
    )
    system = (
        "Answer the question using only the numbered sources below. Cite sources like [1]. If the sources "
        "do not contain the answer, say that you do not know.\n\n" + context
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def extractive_answer(hits: list[Hit]) -> str:
    """The passages themselves, best first, each quoted and marked with its citation's number."""
    return "\n\n".join(f'"{h.text}" [{n}]' for n, h in enumerate(hits, start=1))


def citations(hits: list[Hit]) -> list[dict[str, Any]]:
    return [
        {
            "index": n,
            "document_id": h.document_id,
            "title": h.title,
            "section": h.section,
            "page": h.page,
            "chunk": h.text,
            "score": round(h.score, 6),
        }
        for n, h in enumerate(hits, start=1)
    ]


NO_ANSWER = "I could not find anything relevant to this question in the selected collections."
