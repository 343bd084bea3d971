"""Money: the amount field of the API's bodies and of the events, and how OpenAPI shows it."""

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from marshmallow import fields, validate

if TYPE_CHECKING:  # apispec is not imported where amounts are only read and written (the consumer)
    from apispec.ext.marshmallow.field_converter import FieldConverterMixin

CENT = Decimal("0.01")
MAX_AMOUNT = Decimal("99999999.99")  # NUMERIC(10, 2)


def money_text(amount: Decimal | str) -> str:
    """An amount as the API and the events write it: a string with two decimal places."""
    return str(Decimal(amount).quantize(CENT))


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

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("validate", validate.Range(min=0, min_inclusive=False, max=MAX_AMOUNT))
        super().__init__(as_string=True, **kwargs)

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Decimal:
        if isinstance(value, str) and not re.fullmatch(AMOUNT_PATTERN, value):
            raise self.make_error("not_plain")
        amount = super()._deserialize(value, attr, data, **kwargs)
        if abs(amount) <= MAX_AMOUNT and amount != amount.quantize(CENT):
            raise self.make_error("too_precise")
        return amount

    def _serialize(self, value: Decimal | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else money_text(value)


def money_openapi_property(
    _converter: "FieldConverterMixin", field: fields.Field[Any], ret: dict[str, Any], **_kwargs: Any
) -> dict[str, Any]:
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
