"""The installation: one row holding an id made when the database is first migrated.

Revision ID: 0008
Revises: 0007

Counters kept outside the database (the limiter's, in Redis) are keyed under this id, so two
installations sharing a Redis database do not share counts, and a new database starts from zero
where an old database's key and tenant ids had counts.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.execute("INSERT INTO installation (id) VALUES (gen_random_uuid()::text)")


def downgrade() -> None:
    op.drop_table("installation")
