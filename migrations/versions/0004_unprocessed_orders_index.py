"""index of unprocessed orders

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade():
    # The reconciler's work list: orders not processed yet, oldest first. Small however large the
    # table grows, since processed orders leave it.
    op.create_index(
        "ix_orders_unprocessed",
        "orders",
        ["created_at", "id"],
        postgresql_where=sa.text("processed_at IS NULL"),
    )


def downgrade():
    op.drop_index("ix_orders_unprocessed", table_name="orders")
