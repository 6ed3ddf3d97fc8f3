"""RagStore: collections, documents and chunks in PostgreSQL; pgvector (HNSW) and full-text search.

Each collection has its own embedding model and dimension, so the ``embedding``
column is an untyped ``vector`` and every collection gets a partial HNSW index on
``embedding::vector(<dim>)``; queries use the same expression and the index.
Keyword search uses ``tsvector`` with OR semantics (any query term counts), ranked like BM25
(``rag_fulltext``).
Hybrid search fuses both rankings with reciprocal rank fusion (k = 60).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text

from inferhub.errors import PgvectorMissing
from inferhub.store._rag_schema import CHUNKS_DDL
from inferhub.store.database import Database
from inferhub.store.rag_fulltext import keyword_rows

RRF_K = 60


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: int
    document_id: str
    title: str
    section: str | None
    page: int | None
    text: str
    metadata: dict[str, Any]
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None

    def public(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "title": self.title,
            "section": self.section,
            "page": self.page,
            "text": self.text,
            "metadata": self.metadata,
            "score": round(self.score, 6),
            "vector_score": round(self.vector_score, 6) if self.vector_score is not None else None,
            "keyword_score": round(self.keyword_score, 6) if self.keyword_score is not None else None,
        }


def content_hash(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _vector(values: list[float]) -> str:
    return "[" + ",".join(f"{v:.7g}" for v in values) + "]"


class RagStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- schema -----------------------------------------------------------------------------------------

    def _check_pgvector(self, session) -> None:
        present = session.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'vector'")).first()
        if present is None:
            try:
                with session.begin_nested():
                    session.execute(text("CREATE EXTENSION IF NOT EXISTS vector"))
            except Exception:
                name = session.execute(text("SELECT current_database()")).scalar()
                raise PgvectorMissing(
                    f"the PostgreSQL extension 'vector' (pgvector) is not installed in database {name!r}: install "
                    "pgvector on the server (e.g. the postgresql-<version>-pgvector package) and run "
                    "CREATE EXTENSION vector as a superuser; everything but collections works without it"
                ) from None
        exists = session.execute(text("SELECT to_regclass('chunks')")).scalar()
        if exists is None:
            session.execute(text(CHUNKS_DDL))

    # -- collections ------------------------------------------------------------------------------------

    def create_collection(
        self,
        *,
        tenant_id: int | None,
        key_id: int,
        name: str,
        description: str,
        embedding_model: str,
        dimensions: int,
        chunk_size: int,
        chunk_overlap: int,
    ) -> dict:
        with self._db.session() as session:
            self._check_pgvector(session)
            row = session.execute(
                text("""
                INSERT INTO collections (tenant_id, key_id, name, description, embedding_model, dimensions,
                                         chunk_size, chunk_overlap)
                VALUES (:tenant, :key, :name, :description, :model, :dims, :size, :overlap)
                RETURNING id
            """),
                {
                    "tenant": tenant_id,
                    "key": key_id,
                    "name": name,
                    "description": description,
                    "model": embedding_model,
                    "dims": dimensions,
                    "size": chunk_size,
                    "overlap": chunk_overlap,
                },
            ).one()
            session.execute(
                text(
                    f"CREATE INDEX IF NOT EXISTS ix_chunks_hnsw_{row.id} ON chunks USING hnsw "
                    f"((embedding::vector({int(dimensions)})) vector_cosine_ops) WHERE collection_id = {row.id}"
                )
            )
        return self.get_collection_by_id(row.id)  # type: ignore[return-value]

    def _collection_query(self) -> str:
        return """
            SELECT c.*, (SELECT count(*) FROM documents d WHERE d.collection_id = c.id) AS document_count
            FROM collections c
        """

    def get_collection(self, *, tenant_id: int | None, key_id: int, name: str) -> dict | None:
        owner = "c.tenant_id = :tenant" if tenant_id is not None else "c.tenant_id IS NULL AND c.key_id = :key"
        with self._db.session() as session:
            row = (
                session.execute(
                    text(self._collection_query() + f" WHERE {owner} AND c.name = :name"),
                    {"tenant": tenant_id, "key": key_id, "name": name},
                )
                .mappings()
                .first()
            )
            return _collection(row) if row else None

    def get_collection_by_id(self, collection_id: int) -> dict | None:
        with self._db.session() as session:
            row = (
                session.execute(text(self._collection_query() + " WHERE c.id = :id"), {"id": collection_id})
                .mappings()
                .first()
            )
            return _collection(row) if row else None

    def list_collections(self, *, tenant_id: int | None, key_id: int) -> list[dict]:
        owner = "c.tenant_id = :tenant" if tenant_id is not None else "c.tenant_id IS NULL AND c.key_id = :key"
        with self._db.session() as session:
            rows = (
                session.execute(
                    text(self._collection_query() + f" WHERE {owner} ORDER BY c.name"),
                    {"tenant": tenant_id, "key": key_id},
                )
                .mappings()
                .all()
            )
            return [_collection(r) for r in rows]

    def delete_collection(self, collection_id: int) -> None:
        with self._db.session() as session:
            session.execute(text(f"DROP INDEX IF EXISTS ix_chunks_hnsw_{int(collection_id)}"))
            session.execute(text("DELETE FROM collections WHERE id = :id"), {"id": collection_id})

    # -- documents --------------------------------------------------------------------------------------

    def add_document(
        self,
        collection_id: int,
        *,
        title: str,
        content: bytes,
        mime: str,
        filename: str | None,
        source_url: str | None,
        metadata: dict,
        replace: str | None = None,
    ) -> tuple[dict, bool]:
        """Store a document for ingestion; the same content in the same collection returns the existing one."""
        digest = content_hash(content)
        with self._db.session() as session:
            existing = session.execute(
                text("SELECT id FROM documents WHERE collection_id = :c AND content_hash = :h"),
                {"c": collection_id, "h": digest},
            ).first()
            if existing is not None:
                return self.get_document(existing.id), False  # type: ignore[return-value]
            if replace:
                session.execute(
                    text(
                        "UPDATE documents SET title = :title, content = :content, content_hash = :h, mime = :mime, "
                        "filename = :filename, source_url = :url, metadata = CAST(:meta AS jsonb), status = 'queued', "
                        "error = NULL, updated_at = now() WHERE id = :id AND collection_id = :c"
                    ),
                    {
                        "title": title,
                        "content": content,
                        "h": digest,
                        "mime": mime,
                        "filename": filename,
                        "url": source_url,
                        "meta": orjson.dumps(metadata).decode(),
                        "id": replace,
                        "c": collection_id,
                    },
                )
                document_id = replace
            else:
                document_id = "doc_" + uuid.uuid4().hex[:24]
                # ON CONFLICT: two uploads of the same content at once both pass the check above; the second
                # then gets the first's document, as a sequential duplicate would, instead of a unique violation.
                inserted = session.execute(
                    text("""
                    INSERT INTO documents (id, collection_id, title, content, content_hash, mime, filename,
                                           source_url, metadata, status)
                    VALUES (:id, :c, :title, :content, :h, :mime, :filename, :url, CAST(:meta AS jsonb), 'queued')
                    ON CONFLICT (collection_id, content_hash) DO NOTHING
                    RETURNING id
                """),
                    {
                        "id": document_id,
                        "c": collection_id,
                        "title": title,
                        "content": content,
                        "h": digest,
                        "mime": mime,
                        "filename": filename,
                        "url": source_url,
                        "meta": orjson.dumps(metadata).decode(),
                    },
                ).first()
                if inserted is None:
                    winner = session.execute(
                        text("SELECT id FROM documents WHERE collection_id = :c AND content_hash = :h"),
                        {"c": collection_id, "h": digest},
                    ).first()
                    if winner is not None:
                        return self.get_document(winner.id), False  # type: ignore[return-value]
        return self.get_document(document_id), True  # type: ignore[return-value]

    def set_job(self, document_id: str, job_id: str) -> None:
        with self._db.session() as session:
            session.execute(text("UPDATE documents SET job_id = :j WHERE id = :id"), {"j": job_id, "id": document_id})

    def get_document(self, document_id: str, *, with_content: bool = False) -> dict | None:
        columns = (
            "d.*"
            if with_content
            else (
                "d.id, d.collection_id, d.title, d.source_url, d.filename, d.mime, d.metadata, d.content_hash, "
                "d.status, d.error, d.chunk_count, d.job_id, d.created_at, d.updated_at, length(d.content) AS bytes"
            )
        )
        with self._db.session() as session:
            row = (
                session.execute(text(f"SELECT {columns} FROM documents d WHERE d.id = :id"), {"id": document_id})
                .mappings()
                .first()
            )
            return _document(row) if row else None

    def list_documents(
        self, collection_id: int, *, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[dict]:
        where = "collection_id = :c" + (" AND status = :s" if status else "")
        with self._db.session() as session:
            rows = (
                session.execute(
                    text(
                        "SELECT id, collection_id, title, source_url, filename, mime, metadata, content_hash, status, "
                        "error, chunk_count, job_id, created_at, updated_at, length(content) AS bytes FROM documents "
                        f"WHERE {where} ORDER BY created_at, id LIMIT :limit OFFSET :offset"
                    ),
                    {"c": collection_id, "s": status, "limit": limit, "offset": offset},
                )
                .mappings()
                .all()
            )
            return [_document(r) for r in rows]

    def delete_document(self, document_id: str) -> bool:
        with self._db.session() as session:
            return bool(session.execute(text("DELETE FROM documents WHERE id = :id"), {"id": document_id}).rowcount)

    def set_status(self, document_id: str, status: str, error: str | None = None) -> None:
        with self._db.session() as session:
            session.execute(
                text("UPDATE documents SET status = :s, error = :e, updated_at = now() WHERE id = :id"),
                {"s": status, "e": error, "id": document_id},
            )

    def replace_chunks(self, document_id: str, collection_id: int, chunks: list[dict[str, Any]]) -> int:
        """Swap a document's chunks in one transaction: searches see the old set or the new one, never a mix."""
        with self._db.session() as session:
            session.execute(text("DELETE FROM chunks WHERE document_id = :d"), {"d": document_id})
            if chunks:
                session.execute(
                    text("""
                    INSERT INTO chunks (document_id, collection_id, ordinal, text, section, page, metadata, embedding)
                    VALUES (:d, :c, :ordinal, :text, :section, :page, CAST(:metadata AS jsonb),
                            CAST(:embedding AS vector))
                """),
                    [
                        {
                            "d": document_id,
                            "c": collection_id,
                            "ordinal": ch["ordinal"],
                            "text": ch["text"],
                            "section": ch["section"],
                            "page": ch["page"],
                            "metadata": orjson.dumps(ch["metadata"]).decode(),
                            "embedding": _vector(ch["embedding"]),
                        }
                        for ch in chunks
                    ],
                )
            session.execute(
                text(
                    "UPDATE documents SET status = 'ready', error = NULL, chunk_count = :n, updated_at = now() "
                    "WHERE id = :d"
                ),
                {"n": len(chunks), "d": document_id},
            )
        return len(chunks)

    # -- search -----------------------------------------------------------------------------------------

    def search(
        self,
        collection: dict,
        *,
        query: str,
        embedding: list[float] | None,
        mode: str,
        top_k: int,
        filter: dict | None = None,
        candidates: int = 50,
    ) -> list[Hit]:
        with self._db.session() as session:
            vector_hits = self._vector(session, collection, embedding, filter, candidates) if mode != "keyword" else []
            keyword_hits = self._keyword(session, collection, query, filter, candidates) if mode != "vector" else []
        if mode == "vector":
            return vector_hits[:top_k]
        if mode == "keyword":
            return keyword_hits[:top_k]
        fused: dict[int, float] = {}
        by_id: dict[int, Hit] = {}
        vector_score = {h.chunk_id: h.vector_score for h in vector_hits}
        keyword_score = {h.chunk_id: h.keyword_score for h in keyword_hits}
        for ranking in (vector_hits, keyword_hits):
            for rank, hit in enumerate(ranking, start=1):
                fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
                by_id.setdefault(hit.chunk_id, hit)
        ordered = sorted(fused, key=lambda cid: fused[cid], reverse=True)[:top_k]
        return [
            Hit(
                **{
                    **_fields(by_id[cid]),
                    "score": fused[cid],
                    "vector_score": vector_score.get(cid),
                    "keyword_score": keyword_score.get(cid),
                }
            )
            for cid in ordered
        ]

    def _vector(self, session, collection: dict, embedding, filter, limit) -> list[Hit]:
        dims = int(collection["dimensions"])
        where, params = _filter(filter)
        session.execute(text("SET LOCAL hnsw.ef_search = 100"))
        rows = session.execute(
            text(f"""
            SELECT c.id, c.document_id, d.title, c.section, c.page, c.text, c.metadata,
                   1 - (c.embedding::vector({dims}) <=> CAST(:q AS vector({dims}))) AS score
            FROM chunks c JOIN documents d ON d.id = c.document_id
            WHERE c.collection_id = :cid {where}
            ORDER BY c.embedding::vector({dims}) <=> CAST(:q AS vector({dims}))
            LIMIT :limit
        """),
            {"q": _vector(embedding), "cid": collection["id"], "limit": limit, **params},
        ).all()
        return [
            Hit(
                r.id,
                r.document_id,
                r.title,
                r.section,
                r.page,
                r.text,
                r.metadata,
                float(r.score),
                vector_score=float(r.score),
            )
            for r in rows
        ]

    def _keyword(self, session, collection: dict, query: str, filter, limit) -> list[Hit]:
        where, params = _filter(filter)
        rows = keyword_rows(session, collection["id"], query, where, params, limit)
        return [
            Hit(
                r.id,
                r.document_id,
                r.title,
                r.section,
                r.page,
                r.text,
                r.metadata,
                float(r.score),
                keyword_score=float(r.score),
            )
            for r in rows
        ]

    def chunk_count(self) -> int:
        with self._db.session() as session:
            return session.execute(text("SELECT count(*) FROM chunks")).scalar() or 0


def _fields(hit: Hit) -> dict[str, Any]:
    return {
        "chunk_id": hit.chunk_id,
        "document_id": hit.document_id,
        "title": hit.title,
        "section": hit.section,
        "page": hit.page,
        "text": hit.text,
        "metadata": hit.metadata,
    }


def _filter(filter: dict | None) -> tuple[str, dict[str, Any]]:
    if not filter:
        return "", {}
    return "AND c.metadata @> CAST(:filter AS jsonb)", {"filter": orjson.dumps(filter).decode()}


def _collection(row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "collection",
        "name": row["name"],
        "description": row["description"],
        "embedding_model": row["embedding_model"],
        "dimensions": row["dimensions"],
        "chunk_size": row["chunk_size"],
        "chunk_overlap": row["chunk_overlap"],
        "document_count": row["document_count"],
        "created_at": row["created_at"].isoformat(),
        "tenant_id": row["tenant_id"],
        "key_id": row["key_id"],
    }


def _document(row) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "object": "document",
        "collection_id": row["collection_id"],
        "title": row["title"],
        "source_url": row["source_url"],
        "filename": row["filename"],
        "mime": row["mime"],
        "metadata": row["metadata"],
        "content_hash": row["content_hash"],
        "status": row["status"],
        "error": row["error"],
        "chunk_count": row["chunk_count"],
        "job_id": row["job_id"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    if "bytes" in row:
        out["bytes"] = row["bytes"]
    if "content" in row:
        out["content"] = bytes(row["content"])
    return out
