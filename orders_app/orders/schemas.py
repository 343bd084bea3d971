"""Order request and response bodies.

Validation is strict and never coerces: 1.5 or "2" is not a quantity, 1.005 is not a price.
"""

import re
from decimal import Decimal

from marshmallow import fields, pre_load, validate

from ..models import OrderStatus
from ..schemas import Schema

CENT = Decimal("0.01")
PAGINATION_PARAMETERS = ("page", "page_size")  # parsed by flask-smorest's @paginate
MAX_AMOUNT = Decimal("99999999.99")  # NUMERIC(10, 2)


# Plain digits, at most two decimals, not zero: "10.50", "7", "0.01".
AMOUNT_PATTERN = r"^(?!0*(\.0*)?$)\d{1,8}(\.\d{1,2})?$"


class Money(fields.Decimal):
    """An amount in (0, 99,999,999.99] with at most two decimal places.

    Read from a JSON number, or a string of plain digits ("10.50"; no sign, exponent or spaces),
    without rounding; written as a string with two places.
    """

    default_error_messages = {
        "too_precise": "Must have at most two decimal places.",
        "not_plain": "Must be a number, or a string like 10.50.",
    }

    def __init__(self, **kwargs):
        kwargs.setdefault("validate", validate.Range(min=0, min_inclusive=False, max=MAX_AMOUNT))
        super().__init__(as_string=True, **kwargs)

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) and not re.fullmatch(AMOUNT_PATTERN, value):
            raise self.make_error("not_plain")
        amount = super()._deserialize(value, attr, data, **kwargs)
        if abs(amount) <= MAX_AMOUNT and amount != amount.quantize(CENT):
            raise self.make_error("too_precise")
        return amount

    def _serialize(self, value, attr, obj, **kwargs):
        return None if value is None else str(Decimal(value).quantize(CENT))


def money_openapi_property(_converter, field, ret, **_kwargs):
    """apispec attribute function: a ``Money`` field is a positive number or a decimal string."""
    if not isinstance(field, Money):
        return {}
    for generic in ("type", "format", "minimum", "maximum", "exclusiveMinimum"):
        ret.pop(generic, None)
    ret.setdefault("description", "An amount with at most two decimal places; answered as a string")
    return {
        "anyOf": [
            {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": float(MAX_AMOUNT)},
            {"type": "string", "pattern": AMOUNT_PATTERN},
        ]
    }


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
