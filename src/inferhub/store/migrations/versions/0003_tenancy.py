"""Tenancy: tenants, key ownership and limits, admin users, prices, usage records, backend secrets.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.Column("limits", JSONB, nullable=False, server_default="{}"),
        sa.Column("store_payloads", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("webhook_secret", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.add_column("api_keys", sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"),
                                        nullable=True, index=True))  # fmt: skip
    op.add_column("api_keys", sa.Column("allowed_models", JSONB, nullable=False, server_default="[]"))
    op.add_column("api_keys", sa.Column("limits", JSONB, nullable=False, server_default="{}"))
    op.add_column("api_keys", sa.Column("priority", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "admin_users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(200), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("role", sa.String(30), nullable=False),
        sa.Column("tenant_id", sa.Integer, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=True),
        sa.Column("disabled", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("role IN ('platform_admin','tenant_admin')", name="ck_admin_users_role"),
    )
    op.create_table(
        "model_prices",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("prompt_per_million", sa.Numeric(18, 6), nullable=False, server_default="0"),
        sa.Column("completion_per_million", sa.Numeric(18, 6), nullable=False, server_default="0"),
        sa.Column("source", sa.String(20), nullable=False, server_default="api"),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer, nullable=True),
        sa.Column("key_id", sa.Integer, nullable=True),
        sa.Column("endpoint", sa.String(100), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("backend", sa.String(200), nullable=True),
        sa.Column("prompt_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("completion_tokens", sa.Integer, nullable=False, server_default="0"),
        sa.Column("latency_ms", sa.Float, nullable=False, server_default="0"),
        sa.Column("ttft_ms", sa.Float, nullable=True),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("cost", sa.Numeric(18, 8), nullable=False, server_default="0"),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("request_bytes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("response_bytes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("prompt", JSONB, nullable=True),
        sa.Column("completion", sa.Text, nullable=True),
        sa.UniqueConstraint("request_id", name="uq_usage_records_request_id"),
    )
    op.create_index("ix_usage_records_tenant_at", "usage_records", ["tenant_id", "at"])
    op.create_index("ix_usage_records_at", "usage_records", ["at"])
    op.add_column("llm_backends", sa.Column("credentials_encrypted", sa.Text, nullable=True))


def downgrade() -> None:
    op.drop_column("llm_backends", "credentials_encrypted")
    op.drop_table("usage_records")
    op.drop_table("model_prices")
    op.drop_table("admin_users")
    for column in ("priority", "limits", "allowed_models", "tenant_id"):
        op.drop_column("api_keys", column)
    op.drop_table("tenants")
