"""the W3C trace context of each outbox event

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade():
    # Nullable, no default: PostgreSQL adds the column without rewriting the table, and events
    # written before (or with traces off) have none.
    op.add_column("outbox_events", sa.Column("trace_context", postgresql.JSONB(), nullable=True))


def downgrade():
    op.drop_column("outbox_events", "trace_context")
