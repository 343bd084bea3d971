"""Order business rules: totals, idempotent creation, ownership, the status machine, listing.

Free of HTTP: callers pass a ``Viewer`` and get every order back in one shape, the API's
``OrderData`` (what the cache stores too), or a ``ServiceError``. The hot paths run statements
built once (docs/architecture.md, "Conventions") and read plain rows, not models.
"""

import functools
import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg2.errors import ForeignKeyViolation
from sqlalchemy import Select, bindparam, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError

from ..auth.identity import Viewer
from ..errors import ServiceError, UserGone
from ..events.outbox import add_new_order_event
from ..extensions import db
from ..metrics import ORDERS_CREATED
from ..models import IDEMPOTENCY_WINDOW, IdempotencyKey, Order, OrderStatus
from ..money import MAX_AMOUNT
from . import cache
from .schemas import ItemData, ItemInput, OrderData, Position, order_data

NEXT_STATUSES: dict[OrderStatus, tuple[OrderStatus, ...]] = {
    OrderStatus.PENDING: (OrderStatus.PAID, OrderStatus.CANCELED),
    OrderStatus.PAID: (OrderStatus.SHIPPED, OrderStatus.CANCELED),
    OrderStatus.SHIPPED: (),
    OrderStatus.CANCELED: (),
}


class OrderNotFound(ServiceError):
    status_code = 404

    def __init__(self) -> None:
        super().__init__("Order not found")


class ForeignOrders(ServiceError):
    status_code = 403

    def __init__(self) -> None:
        super().__init__("You may only list your own orders")


class PageTooDeep(ServiceError):
    status_code = 422

    def __init__(self, max_page: int) -> None:
        message = (
            f"Must be at most {max_page}: a page number makes the database walk past every earlier "
            "order. Deeper, follow X-Pagination's next_cursor (?cursor=), as fast at any depth."
        )
        super().__init__("Page number too deep", errors={"query": {"page": [message]}})


class IllegalTransition(ServiceError):
    status_code = 409

    def __init__(self, current: OrderStatus, requested: OrderStatus) -> None:
        allowed = ", ".join(s.name for s in NEXT_STATUSES[current]) or "none (final state)"
        super().__init__(
            f"Cannot change status from {current.name} to {requested.name}; allowed next states: {allowed}"
        )


class InvalidOrder(ServiceError):
    status_code = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__("Invalid order", errors={"json": {field: [message]}})


class IdempotencyKeyReused(ServiceError):
    status_code = 422

    def __init__(self) -> None:
        message = "This key was already used with a different request body"
        super().__init__(message, errors={"headers": {"Idempotency-Key": [message]}})


def order_total(items: Iterable[ItemInput]) -> Decimal:
    return sum((item["price"] * item["quantity"] for item in items), Decimal("0.00"))


# Statements on the table, not the ORM's.
_ORDERS = Order.__table__
# The table's defaults fill in the id and the status, PostgreSQL the timestamps; the row comes back whole.
_INSERT_ORDER = insert(_ORDERS).returning(*_ORDERS.columns)


def create_order(
    viewer: Viewer,
    items: list[ItemInput],
    claimed_total: Decimal | None = None,
    idempotency_key: str | None = None,
    request_id: str | None = None,
) -> tuple[OrderData, bool]:
    """Create an order and its ``new_order`` event in one transaction; return ``(order, created)``.

    With an ``idempotency_key`` the same key from the same user within 24 hours returns the order
    it created first (``created`` False) and creates nothing; the key with another body is a 422.
    Concurrent requests with one key serialise on the key's row: one creates, the others replay.
    """
    total = order_total(items)
    if claimed_total is not None and claimed_total != total:
        raise InvalidOrder("total_price", f"Does not match the sum of the items ({total:.2f})")
    if total > MAX_AMOUNT:
        raise InvalidOrder("items", f"The total must not exceed {MAX_AMOUNT}")

    stored_items: list[ItemData] = [
        {"name": item["name"], "quantity": item["quantity"], "price": f"{item['price']:.2f}"}
        for item in items
    ]
    values = {"user_id": viewer.user_id, "items": stored_items, "total_price": total}
    try:
        row = db.session.execute(_INSERT_ORDER, values).one()
    except IntegrityError as error:
        db.session.rollback()
        if isinstance(error.orig, ForeignKeyViolation):  # the order's one foreign key: its user
            raise UserGone() from None
        raise
    request_hash = _request_hash(stored_items) if idempotency_key else None
    if idempotency_key is None or _claim_key(viewer.user_id, idempotency_key, request_hash, row.id):
        add_new_order_event(row, request_id)
        db.session.commit()
        ORDERS_CREATED.inc()
        return order_data(row), True

    db.session.rollback()  # another request with this key got there first
    return _replay(viewer.user_id, idempotency_key, request_hash), False


def _request_hash(stored_items: list[ItemData]) -> str:
    return hashlib.sha256(json.dumps(stored_items, sort_keys=True).encode()).hexdigest()


def _claim_key(user_id: int, key: str, request_hash: str | None, order_id: uuid.UUID) -> bool:
    """Record ``key`` for the order ``order_id`` unless a live (under 24 hours old) record exists.

    Waits for a concurrent transaction holding the same key to finish first.
    """
    statement = (
        insert(IdempotencyKey)
        .values(user_id=user_id, key=key, request_hash=request_hash, order_id=order_id)
        .on_conflict_do_update(
            index_elements=[IdempotencyKey.user_id, IdempotencyKey.key],
            set_={"request_hash": request_hash, "order_id": order_id, "created_at": func.now()},
            where=IdempotencyKey.created_at < func.now() - IDEMPOTENCY_WINDOW,
        )
        .returning(IdempotencyKey.order_id)
    )
    return db.session.execute(statement).first() is not None


def _replay(user_id: int, key: str, request_hash: str | None) -> OrderData:
    """The first response again, as payment APIs replay it: the order as it was created, whatever
    happened to it since (its current state is a GET away)."""
    record = db.session.get_one(IdempotencyKey, (user_id, key))
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused()
    order = order_data(db.session.get_one(Order, record.order_id))
    # What never changes, and the state every order starts in (created_at and updated_at were set
    # by the INSERT, to the same time).
    return {
        **order,
        "status": OrderStatus.PENDING.name,
        "updated_at": order["created_at"],
        "processed_at": None,
    }


def get_order(viewer: Viewer, order_id: uuid.UUID) -> tuple[OrderData, bool]:
    """Return ``(order, cache_hit)``: the cached order, or PostgreSQL's, which fills the cache."""
    cached = cache.read(order_id)
    if cached is not None:
        if not viewer.may_see(cached["user_id"]):
            raise OrderNotFound()
        return cached, True
    model = db.session.get(Order, order_id)
    if model is None or not viewer.may_see(model.user_id):
        raise OrderNotFound()
    order = order_data(model)
    cache.store(order)
    return order, False


def change_status(
    viewer: Viewer,
    order_id: uuid.UUID,
    status: OrderStatus,
    precondition: Callable[[OrderData], None] | None = None,
) -> OrderData:
    """Apply a status transition under a row lock; ``precondition(order)`` may veto it (If-Match).

    Setting the current status again changes nothing.
    """
    model = db.session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if model is None or not viewer.may_see(model.user_id):
        raise OrderNotFound()
    if precondition is not None:
        precondition(order_data(model))
    if status is not model.status:
        if status not in NEXT_STATUSES[model.status]:
            raise IllegalTransition(model.status, status)
        model.status = status
    db.session.commit()
    order = order_data(model)
    cache.store(order)
    return order


# A table statement, not the ORM's UPDATE … RETURNING Order (its bulk-update machinery, an object
# built back). The table's onupdate moves ``updated_at`` (the cache's version) all the same.
_MARK_PROCESSED = (
    update(_ORDERS)
    .where(_ORDERS.c.id == bindparam("order_id"), _ORDERS.c.processed_at.is_(None))
    .values(processed_at=func.now())
    .returning(*_ORDERS.columns)
)


def mark_processed(order_id: uuid.UUID | str) -> tuple[OrderData, bool]:
    """Set ``processed_at`` unless already set; return ``(order, processed_now)``.

    A repeated run changes nothing. A new state is written through to the cache.
    """
    row = db.session.execute(_MARK_PROCESSED, {"order_id": order_id}).one_or_none()
    processed_now = row is not None
    found = row if processed_now else db.session.get(Order, order_id)
    if found is None:
        raise LookupError(f"Order {order_id} does not exist")
    db.session.commit()
    order = order_data(found)
    if processed_now:
        cache.store(order)
    return order, processed_now


# A list's total is counted up to this many orders, so that counting costs the same for a user
# with 200,000 orders as for one with 1,000; beyond it the total is unknown (``OrderPage.total``).
COUNT_LIMIT = 1000
# Beyond this, OFFSET is out of PostgreSQL's range (bigint): such a page is past any end.
MAX_OFFSET = 2**63 - 1


@dataclass(frozen=True)
class OrderPage:
    """One page of a user's orders, newest first."""

    orders: list[OrderData]
    counted: int  # the orders counted, COUNT_LIMIT + 1 at most
    next_after: Position | None  # where the next page starts; None on the last page

    @property
    def total(self) -> int | None:
        """How many orders there are, or None: more than COUNT_LIMIT."""
        return self.counted if self.counted <= COUNT_LIMIT else None


def list_orders(
    viewer: Viewer,
    owner_id: int,
    status: OrderStatus | None = None,
    after: Position | None = None,
    offset: int = 0,
    limit: int = 20,
    max_page: int | None = None,
) -> OrderPage:
    """One page of ``owner_id``'s orders, newest first: those after the position ``after`` (a
    ``(created_at, id)`` pair: keyset pagination, as cheap at any depth), or from ``offset`` on.

    An ``offset`` is paid for in proportion: past page ``max_page`` (of ``limit`` orders) it is a
    ``PageTooDeep``, unless the list is counted and ends before it (an empty page, as past any end).

    One query reads the page (and one order more, to know whether another page follows) and the
    total, counted up to ``COUNT_LIMIT``.
    """
    if not viewer.may_see(owner_id):
        raise ForeignOrders()
    page, counted = _listing(by_status=status is not None, by_cursor=after is not None)
    parameters: dict[str, object] = {"owner_id": owner_id, "status": status, "count_limit": COUNT_LIMIT + 1}
    if after is not None:
        parameters["after_created_at"], parameters["after_id"] = after
    too_deep = max_page is not None and offset > (max_page - 1) * limit
    rows = (
        db.session.execute(page, {**parameters, "offset": offset, "limit": limit + 1}).all()
        if offset <= MAX_OFFSET and not too_deep
        else []
    )
    # Past the end: the count alone (a count has one row, always).
    count: int = rows[0].counted if rows else db.session.execute(counted, parameters).scalar_one()
    if too_deep and (count > COUNT_LIMIT or offset < count):
        assert max_page is not None, "too_deep needs a max_page"
        raise PageTooDeep(max_page)
    rows, more = rows[:limit], len(rows) > limit
    next_after = (rows[-1].created_at, rows[-1].id) if more else None
    return OrderPage(orders=[order_data(row) for row in rows], counted=count, next_after=next_after)


@functools.cache
def _listing(by_status: bool, by_cursor: bool) -> tuple[Select[Any], Select[int]]:
    """The statements of a listing, ``(page, count)``, for each kind of listing."""
    orders = _ORDERS.c
    condition = orders.user_id == bindparam("owner_id")
    if by_status:
        condition &= orders.status == bindparam("status")
    matching = select(1).where(condition).limit(bindparam("count_limit")).subquery()
    counted = select(func.count()).select_from(matching)
    page = select(*orders, counted.scalar_subquery().label("counted")).where(condition)
    if by_cursor:
        position = tuple_(
            bindparam("after_created_at", type_=orders.created_at.type),
            bindparam("after_id", type_=orders.id.type),
        )
        page = page.where(tuple_(orders.created_at, orders.id) < position)
    page = page.order_by(orders.created_at.desc(), orders.id.desc())
    return page.offset(bindparam("offset")).limit(bindparam("limit")), counted
