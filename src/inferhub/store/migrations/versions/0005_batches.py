"""OpenAI Batch API: files, batches, and the batch a job belongs to.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.Integer, nullable=True, index=True),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("purpose", sa.String(40), nullable=False),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "batches",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("tenant_id", sa.Integer, nullable=True, index=True),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("endpoint", sa.String(60), nullable=False),
        sa.Column("input_file_id", sa.String(40), nullable=False),
        sa.Column("output_file_id", sa.String(40), nullable=True),
        sa.Column("error_file_id", sa.String(40), nullable=True),
        sa.Column("completion_window", sa.String(10), nullable=False, server_default="24h"),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("metadata", JSONB, nullable=True),
        sa.Column("request_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("invalid_lines", JSONB, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("in_progress_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finalizing_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelling_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column("jobs", sa.Column("batch_id", sa.String(40), nullable=True, index=True))
    op.add_column("jobs", sa.Column("custom_id", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "custom_id")
    op.drop_column("jobs", "batch_id")
    op.drop_table("batches")
    op.drop_table("files")
