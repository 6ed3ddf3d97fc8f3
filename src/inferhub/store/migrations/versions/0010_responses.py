"""Stored Responses (``POST /v1/responses`` with ``store``): per tenant, chained by ``previous_response_id``.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        # Ownership as for jobs: the tenant (NULL for a key without one) and the key that made it.
        sa.Column("tenant_id", sa.Integer, nullable=True),
        sa.Column("key_id", sa.Integer, nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("background", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("request", JSONB, nullable=False),
        sa.Column("input_items", JSONB, nullable=False, server_default="[]"),
        sa.Column("response", JSONB, nullable=True),
        sa.Column("previous_response_id", sa.String(64), nullable=True),
        sa.Column("job_id", sa.String(40), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_responses_tenant", "responses", ["tenant_id", "id"])
    op.create_index("ix_responses_created", "responses", ["created_at"])
    op.create_index(
        "ix_responses_expires", "responses", ["expires_at"], postgresql_where=sa.text("expires_at IS NOT NULL")
    )
    op.create_index("ix_responses_job", "responses", ["job_id"], postgresql_where=sa.text("job_id IS NOT NULL"))


def downgrade() -> None:
    op.drop_table("responses")
