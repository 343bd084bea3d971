"""Order request and response bodies.

Validation is strict and never coerces: 1.5 or "2" is not a quantity, 1.005 is not a price.
"""

from marshmallow import fields, pre_load, validate

from ..models import OrderStatus
from ..money import Money
from ..schemas import Schema

PAGINATION_PARAMETERS = ("page", "page_size")  # parsed by flask-smorest's @paginate


class CaseInsensitiveStatus(fields.Enum):
    """An ``OrderStatus`` by name, in any case."""

    def __init__(self, **kwargs):
        super().__init__(OrderStatus, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
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


class OrderSchema(Schema):
    """An order as the API returns it (and as the cache stores it)."""

    id = fields.UUID()
    user_id = fields.Integer()
    items = fields.List(fields.Nested(ItemSchema))
    total_price = Money()
    status = fields.Enum(OrderStatus)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    processed_at = fields.DateTime(allow_none=True)


class OrderListQuerySchema(Schema):
    """The list's filters; unknown query parameters are a 422, like unknown body fields."""

    status = CaseInsensitiveStatus(metadata={"description": "Only orders in this status"})

    @pre_load
    def leave_pagination_to_smorest(self, data, **_kwargs):
        return {key: value for key, value in data.items() if key not in PAGINATION_PARAMETERS}
