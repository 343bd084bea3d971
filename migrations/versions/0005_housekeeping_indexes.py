"""indexes for housekeeping's purges

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# (index, table, column): what housekeeping deletes by age.
INDEXES = [
    ("ix_outbox_events_published_at", "outbox_events", "published_at"),
    ("ix_idempotency_keys_created_at", "idempotency_keys", "created_at"),
]


def upgrade():
    # CONCURRENTLY: both tables may be large by now (nothing purged them), and a plain CREATE
    # INDEX would block writes, new orders included, for as long as it takes.
    with op.get_context().autocommit_block():
        for name, table, column in INDEXES:
            op.create_index(name, table, [column], postgresql_concurrently=True)


def downgrade():
    with op.get_context().autocommit_block():
        for name, table, _ in INDEXES:
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
