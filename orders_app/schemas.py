"""The base of every request schema: strings carry neither a NUL character nor a lone surrogate."""

import re
from collections.abc import Mapping
from typing import Any

import marshmallow
from marshmallow import ValidationError, pre_load

# JSON can spell a lone surrogate ("\ud800"); Python decodes it into a str no UTF-8 encoder takes.
SURROGATE = re.compile("[\ud800-\udfff]")


def invalid_characters(value: str) -> str | None:
    """Why ``value`` cannot be stored or hashed, or None."""
    if "\x00" in value:
        return "Must not contain NUL characters."
    if not value.isascii() and SURROGATE.search(value):
        return "Must not contain lone surrogates (not valid Unicode)."
    return None


class Schema(marshmallow.Schema):
    """A marshmallow schema refusing ``\\x00`` and lone surrogates in any string it reads (nested
    schemas included).

    PostgreSQL stores no NUL in text or jsonb, and UTF-8 has no surrogates (argon2, orjson and
    psycopg2 each refuse them): refused here, they are a 422 instead of a 500.
    """

    @pre_load
    def refuse_invalid_characters(self, data: Any, **_kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            errors = {
                key: [reason]
                for key, value in data.items()
                if isinstance(value, str) and (reason := invalid_characters(value))
            }
            if errors:
                raise ValidationError(errors)
        return data
