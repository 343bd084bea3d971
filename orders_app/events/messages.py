"""The ``new_order`` event: the message body the relay publishes and the consumer validates."""

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Protocol, TypedDict

from marshmallow import fields, validate

from ..http import REQUEST_ID_PATTERN
from ..money import Money, money_text
from ..schemas import Schema
from .topology import NEW_ORDER


class NewOrderEventSchema(Schema):
    event = fields.String(required=True, validate=validate.Equal(NEW_ORDER))
    event_id = fields.UUID(required=True)
    order_id = fields.UUID(required=True)
    user_id = fields.Integer(required=True, strict=True)
    total_price = Money(required=True)
    created_at = fields.AwareDateTime(required=True)
    # None for events made outside a request; otherwise what the HTTP edge accepts.
    request_id = fields.String(required=True, allow_none=True, validate=validate.Regexp(REQUEST_ID_PATTERN))


schema = NewOrderEventSchema()


class NewOrderEvent(TypedDict):
    """The event body: ``NewOrderEventSchema``'s fields, JSON-ready."""

    event: str
    event_id: str
    order_id: str
    user_id: int
    total_price: str
    created_at: str
    request_id: str | None


class AnnouncedOrder(Protocol):
    """What the event tells of an order (the model, or a row of the orders table)."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def user_id(self) -> int: ...
    @property
    def total_price(self) -> Decimal: ...
    @property
    def created_at(self) -> datetime: ...


def new_order_event(order: AnnouncedOrder, request_id: str | None) -> NewOrderEvent:
    """The event body announcing ``order``, as JSON-ready data: ``NewOrderEventSchema``'s output
    (tests/test_order_format.py), written directly, as creating an order is the API's hot path."""
    return {
        "event": NEW_ORDER,
        "event_id": str(uuid.uuid4()),
        "order_id": str(order.id),
        "user_id": order.user_id,
        "total_price": money_text(order.total_price),
        "created_at": order.created_at.isoformat(),
        "request_id": request_id,
    }
