"""Backends registry and API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "llm_backends",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False, index=True),
        sa.Column("backend_type", sa.String(20), nullable=False),
        sa.Column("endpoint_url", sa.String(500), nullable=False),
        sa.Column("upstream_model", sa.String(200), nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("max_tokens", sa.Integer, nullable=True),
        sa.Column("temperature_default", sa.Float, nullable=True),
        sa.Column("timeout_seconds", sa.Float, nullable=False, server_default="120"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("source", sa.String(20), nullable=False, server_default="api"),
        sa.Column("avg_tokens_per_sec", sa.Float, nullable=False, server_default="0"),
        sa.Column("avg_latency_ms", sa.Float, nullable=False, server_default="0"),
        sa.Column("total_requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("total_errors", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint("model_name", "endpoint_url", name="uq_llm_backends_model_endpoint"),
        sa.CheckConstraint(
            "backend_type IN ('openai','ollama','tei','llamacpp','vllm','mlx')", name="ck_llm_backends_type"
        ),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(32), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", JSONB, nullable=False, server_default="[]"),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("llm_backends")
