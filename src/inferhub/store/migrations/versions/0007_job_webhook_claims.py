"""Jobs: webhook deliveries claimed with a lease and retried on a schedule; indexes for retention.

Revision ID: 0007
Revises: 0006

``webhook_next_at`` is when a ``pending`` delivery is due (NULL: now) or, while ``delivering``,
when its claim runs out; ``webhook_owner`` is the worker holding that claim.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("webhook_next_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("webhook_owner", sa.String(100), nullable=True))
    op.create_index("ix_jobs_webhook_due", "jobs", ["webhook_next_at"],
                    postgresql_where=sa.text("webhook_state IN ('pending', 'delivering')"))  # fmt: skip
    op.create_index("ix_jobs_finished", "jobs", ["finished_at"], postgresql_where=sa.text("finished_at IS NOT NULL"))
    op.create_index("ix_files_created", "files", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_files_created", table_name="files")
    op.drop_index("ix_jobs_finished", table_name="jobs")
    op.drop_index("ix_jobs_webhook_due", table_name="jobs")
    op.drop_column("jobs", "webhook_owner")
    op.drop_column("jobs", "webhook_next_at")
