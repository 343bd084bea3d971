"""Order request and response bodies.

Validation is strict and never coerces: 1.5 or "2" is not a quantity, 1.005 is not a price.
"""

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypedDict, TypeVar

from marshmallow import ValidationError, fields, pre_load, validate

from ..events.messages import AnnouncedOrder
from ..models import OrderStatus
from ..money import Money, money_text
from ..schemas import Schema

PAGINATION_PARAMETERS = ("page", "page_size")  # parsed by flask-smorest's @paginate
# A place in a user's orders, newest first: ``(created_at, id)``.
Position = tuple[datetime, uuid.UUID]
T = TypeVar("T")


class CaseInsensitiveStatus(fields.Enum[OrderStatus]):
    """An ``OrderStatus`` by name, in any case."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(OrderStatus, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> OrderStatus:
        return super()._deserialize(value.upper() if isinstance(value, str) else value, attr, data, **kwargs)


class ItemSchema(Schema):
    name = fields.String(required=True, validate=[validate.Length(1, 200), validate.Regexp(r"\S")])
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(1, 10_000))
    price = Money(required=True)


class OrderCreateSchema(Schema):
    items = fields.List(fields.Nested(ItemSchema), required=True, validate=validate.Length(1, 100))
    total_price = Money(metadata={"description": "Optional; must equal the server-computed total"})


class IdempotencyHeaderSchema(Schema):
    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        validate=validate.Length(1, 255),
        metadata={"description": "Repeating a key (per user, 24 hours) returns the first order"},
    )


class OrderStatusChangeSchema(Schema):
    status = CaseInsensitiveStatus(required=True)


class ItemInput(TypedDict):
    """An item as ``ItemSchema`` reads it from a request."""

    name: str
    quantity: int
    price: Decimal


class ItemData(TypedDict):
    name: str
    quantity: int
    price: str


class OrderData(TypedDict):
    """An order as the API returns it, the cache stores it and the service hands it out: JSON-ready."""

    id: str
    user_id: int
    items: list[ItemData]
    total_price: str
    status: str
    created_at: str
    updated_at: str
    processed_at: str | None


class OrderSchema(Schema):
    """An order as the API returns it: ``OrderData``, which these fields define and document.

    The service hands orders out already in this form (``order_data``), so ``dump`` passes them
    through as they are.
    """

    id = fields.UUID()
    user_id = fields.Integer()
    items = fields.List(fields.Nested(ItemSchema))
    total_price = Money()
    status = fields.Enum(OrderStatus)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)

    def dump(self, obj: T, *, many: bool | None = None) -> T:
        return obj


class StoredOrder(AnnouncedOrder, Protocol):
    """An order read from the database: the model, or a row of the orders table; what its
    ``new_order`` event tells of it, and the rest."""

    @property
    def items(self) -> Sequence[Mapping[str, Any]]: ...  # ``ItemData``, as stored (JSONB)
    @property
    def status(self) -> OrderStatus: ...
    @property
    def updated_at(self) -> datetime: ...
    @property
    def processed_at(self) -> datetime | None: ...


def order_data(order: StoredOrder) -> OrderData:
    """An order (a model, or a row with the same attributes) as ``OrderSchema``'s fields write it:
    exactly what marshmallow would (tests/test_order_format.py pins it), several times faster (a page
    of 20 orders spent a fifth of its time in marshmallow)."""
    processed_at = order.processed_at
    return {
        "id": str(order.id),
        "user_id": order.user_id,
        "items": [
            {"name": item["name"], "quantity": item["quantity"], "price": money_text(item["price"])}
            for item in order.items
        ],
        "total_price": money_text(order.total_price),
        "status": order.status.name,
        "created_at": order.created_at.isoformat(),
        "updated_at": order.updated_at.isoformat(),
        "processed_at": None if processed_at is None else processed_at.isoformat(),
    }


class Cursor(fields.Field[Position]):
    """A position in a user's orders, newest first: opaque to clients, ``(created_at, id)`` here."""

    default_error_messages = {"invalid": "Not a cursor this API gave out."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Position:
        """Only a cursor exactly as ``encode_cursor`` writes it: Python reads times PostgreSQL
        refuses (an offset of ``+16:00``, one with seconds or fractions)."""
        try:
            created_at, order_id = base64.urlsafe_b64decode(value.encode("ascii")).decode().split("|")
            position = datetime.fromisoformat(created_at), uuid.UUID(order_id)
            if encode_cursor(*position) != value:
                raise ValueError("not as given out")
            return position
        except (AttributeError, UnicodeError, binascii.Error, ValueError, OverflowError):
            raise self.make_error("invalid") from None


def encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    """The position after ``(created_at, order_id)``, its time in UTC."""
    text = f"{created_at.astimezone(UTC).isoformat()}|{order_id}"
    return base64.urlsafe_b64encode(text.encode()).decode("ascii")


class OrderListQuerySchema(Schema):
    """The list's filters and cursor; unknown query parameters are a 422, like unknown body fields."""

    status = CaseInsensitiveStatus(metadata={"description": "Only orders in this status"})
    cursor = Cursor(
        metadata={
            "description": "Continue after this position: an X-Pagination next_cursor. Costs the same "
            "at any depth, unlike page (which must walk past every earlier order); not with page.",
            "type": "string",
        }
    )

    @pre_load
    def leave_pagination_to_smorest(self, data: Mapping[str, Any], **_kwargs: Any) -> dict[str, Any]:
        if "cursor" in data and "page" in data:
            raise ValidationError("Send cursor or page, not both.", "cursor")
        return {key: value for key, value in data.items() if key not in PAGINATION_PARAMETERS}
