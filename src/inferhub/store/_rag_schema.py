"""The chunks table DDL: used by migration 0006 and, when pgvector arrives later, by RagStore."""

CHUNKS_DDL = """
CREATE TABLE IF NOT EXISTS chunks (
    id BIGSERIAL PRIMARY KEY,
    document_id VARCHAR(40) NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    text TEXT NOT NULL,
    section TEXT,
    page INTEGER,
    metadata JSONB NOT NULL DEFAULT '{}',
    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', coalesce(section, '') || ' ' || text)) STORED,
    embedding vector NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_chunks_document ON chunks (document_id);
CREATE INDEX IF NOT EXISTS ix_chunks_collection ON chunks (collection_id);
CREATE INDEX IF NOT EXISTS ix_chunks_tsv ON chunks USING gin (tsv);
CREATE INDEX IF NOT EXISTS ix_chunks_metadata ON chunks USING gin (metadata jsonb_path_ops);
"""
