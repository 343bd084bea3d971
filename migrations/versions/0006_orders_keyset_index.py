"""a user's orders indexed in listing order, id included

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op
from sqlalchemy import text

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade():
    # (user_id, created_at DESC, id DESC) is the listing's order exactly, so a cursor's position
    # (created_at, id) is where the index scan starts, however deep the page. It replaces the
    # index on (user_id, created_at DESC), of which it is an extension. CONCURRENTLY: orders
    # keep being placed meanwhile.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_user_id_created_at_id",
            "orders",
            ["user_id", text("created_at DESC"), text("id DESC")],
            postgresql_concurrently=True,
        )
        op.drop_index("ix_orders_user_id_created_at", table_name="orders", postgresql_concurrently=True)


def downgrade():
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_user_id_created_at",
            "orders",
            ["user_id", text("created_at DESC")],
            postgresql_concurrently=True,
        )
        op.drop_index("ix_orders_user_id_created_at_id", table_name="orders", postgresql_concurrently=True)
