"""Database models."""

import enum
import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Numeric,
    String,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from .extensions import Base, db

# mypy takes no attribute (db.Model) for a base class: it sees the declarative base that
# flask-sqlalchemy builds db.Model from.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model


class User(Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("email = lower(email)", name="ck_users_email_lower_case"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(default=False, server_default="false")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    PAID = "PAID"
    SHIPPED = "SHIPPED"
    CANCELED = "CANCELED"


# An order's new ``updated_at`` on every change: the time of the write itself, and always past the
# previous value. The cache orders its writes by it (``orders.cache``), so it must grow in the order
# the changes commit: ``now()`` would not, being the time the transaction began, which can precede
# the commit of a concurrent change that took the row lock first. Evaluated in the UPDATE, after
# the lock is taken (PostgreSQL re-evaluates it if the statement had to wait for the lock).
NEXT_UPDATED_AT = func.greatest(
    func.clock_timestamp(),
    literal_column("orders.updated_at", DateTime(timezone=True)) + timedelta(microseconds=1),
)


class Order(Model):
    __tablename__ = "orders"
    # Server-side timestamps come back with the INSERT/UPDATE (RETURNING), not in a reload.
    __mapper_args__ = {"eager_defaults": True}

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    items: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    total_price: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    status: Mapped[OrderStatus] = mapped_column(
        Enum(OrderStatus, name="order_status"), default=OrderStatus.PENDING
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=NEXT_UPDATED_AT
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    def __repr__(self) -> str:
        return f"<Order {self.id} {self.status.name}>"


# A user's orders, newest first: the listing's order exactly (its keyset pagination starts there).
Index("ix_orders_user_id_created_at_id", Order.user_id, Order.created_at.desc(), Order.id.desc())
# The reconciler's work list: orders not processed yet, oldest first.
Index("ix_orders_unprocessed", Order.created_at, Order.id, postgresql_where=Order.processed_at.is_(None))


# A user's Idempotency-Key replays its order this long, then is free again (decision 0009); the
# service reads it, and so does housekeeping, which deletes the key an hour later.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


class IdempotencyKey(Model):
    """The order a user's ``Idempotency-Key`` created, and a hash of the request that did (for
    ``IDEMPOTENCY_WINDOW``)."""

    __tablename__ = "idempotency_keys"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# Housekeeping's work list: the expired keys.
Index("ix_idempotency_keys_created_at", IdempotencyKey.created_at)


class OutboxEvent(Model):
    """An event to publish; ``published_at`` is set once the broker confirmed it. ``trace_context``
    is the W3C trace context of the request that wrote it (``orders_app.tracing``), if traced."""

    __tablename__ = "outbox_events"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    event_type: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB(none_as_null=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


# The relay's work list: unpublished events, oldest first.
Index(
    "ix_outbox_events_unpublished",
    OutboxEvent.created_at,
    postgresql_where=OutboxEvent.published_at.is_(None),
)
# Housekeeping's work list: events published long enough ago.
Index("ix_outbox_events_published_at", OutboxEvent.published_at)
