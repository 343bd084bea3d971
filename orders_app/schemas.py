"""The base of every request schema: strings never carry a NUL character."""

from collections.abc import Mapping

import marshmallow
from marshmallow import ValidationError, pre_load


class Schema(marshmallow.Schema):
    """A marshmallow schema refusing ``\\x00`` in any string it reads (nested schemas included).

    PostgreSQL stores no NUL in text or jsonb: refused here, it is a 422 instead of a 500.
    """

    @pre_load
    def refuse_nul_characters(self, data, **_kwargs):
        if isinstance(data, Mapping):
            errors = {
                key: ["Must not contain NUL characters."]
                for key, value in data.items()
                if isinstance(value, str) and "\x00" in value
            }
            if errors:
                raise ValidationError(errors)
        return data
