"""Fleet routing: weights, priorities, concurrency limits, draining, model routes, aliases, audit log.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("llm_backends", sa.Column("weight", sa.Integer, nullable=False, server_default="1"))
    op.add_column("llm_backends", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.add_column("llm_backends", sa.Column("max_concurrency", sa.Integer, nullable=True))
    op.add_column("llm_backends", sa.Column("draining", sa.Boolean, nullable=False, server_default=sa.false()))
    op.add_column("llm_backends", sa.Column("discover_models", sa.Boolean, nullable=False, server_default=sa.true()))
    op.create_table(
        "model_routes",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("strategy", sa.String(30), nullable=False, server_default="least-busy"),
        sa.Column("fallback_models", JSONB, nullable=False, server_default="[]"),
        sa.Column("source", sa.String(20), nullable=False, server_default="api"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "model_aliases",
        sa.Column("alias", sa.String(200), primary_key=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("source", sa.String(20), nullable=False, server_default="api"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "config_audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False, index=True),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(50), nullable=False),
        sa.Column("entity_type", sa.String(50), nullable=False),
        sa.Column("entity_id", sa.String(200), nullable=False),
        sa.Column("before", JSONB, nullable=True),
        sa.Column("after", JSONB, nullable=True),
    )
    op.create_index("ix_config_audit_log_entity", "config_audit_log", ["entity_type", "entity_id"])


def downgrade() -> None:
    op.drop_table("config_audit_log")
    op.drop_table("model_aliases")
    op.drop_table("model_routes")
    for column in ("discover_models", "draining", "max_concurrency", "priority", "weight"):
        op.drop_column("llm_backends", column)
