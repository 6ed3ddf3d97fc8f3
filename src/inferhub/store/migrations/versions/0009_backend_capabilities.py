"""Backends: the operations each serves (chat, completions, embeddings); NULL means its type's default.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("llm_backends", sa.Column("capabilities", JSONB, nullable=True))


def downgrade() -> None:
    op.drop_column("llm_backends", "capabilities")
