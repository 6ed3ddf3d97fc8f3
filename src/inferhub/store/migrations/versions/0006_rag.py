"""Retrieval: collections, documents and chunks (pgvector + full-text search).

Revision ID: 0006
Revises: 0005

The ``chunks`` table needs the pgvector extension. When the database lacks it, this
migration creates the rest and leaves ``chunks`` to ``RagStore.ensure_schema``, which
answers creating a collection with a message naming the extension; everything else works.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

from inferhub.store._rag_schema import CHUNKS_DDL  # noqa: E402  (one definition for migration and store)


def upgrade() -> None:
    op.create_table(
        "collections",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("tenant_id", sa.Integer, nullable=True),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("embedding_model", sa.String(200), nullable=False),
        sa.Column("dimensions", sa.Integer, nullable=False),
        sa.Column("chunk_size", sa.Integer, nullable=False, server_default="256"),
        sa.Column("chunk_overlap", sa.Integer, nullable=False, server_default="32"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    # One namespace per tenant (per key without a tenant).
    op.execute("CREATE UNIQUE INDEX uq_collections_owner_name ON collections "
               "(coalesce(tenant_id, -1), (CASE WHEN tenant_id IS NULL THEN key_id ELSE -1 END), name)")  # fmt: skip
    op.create_table(
        "documents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("collection_id", sa.Integer, sa.ForeignKey("collections.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("source_url", sa.Text, nullable=True),
        sa.Column("filename", sa.Text, nullable=True),
        sa.Column("mime", sa.String(120), nullable=False),
        sa.Column("metadata", JSONB, nullable=False, server_default="{}"),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="queued"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("chunk_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("collection_id", "content_hash", name="uq_documents_content"),
    )
    connection = op.get_bind()
    try:
        with connection.begin_nested():
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    except Exception:
        return  # no pgvector here: RagStore.ensure_schema explains when a collection is created
    connection.exec_driver_sql(CHUNKS_DDL)


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS chunks")
    op.drop_table("documents")
    op.drop_table("collections")
