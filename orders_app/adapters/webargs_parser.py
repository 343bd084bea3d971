"""webargs' Flask parser, as every blueprint parses its arguments (bodies, queries, headers)."""

import functools
from typing import TYPE_CHECKING, Any

import flask
import marshmallow
from webargs.flaskparser import FlaskParser, abort

if TYPE_CHECKING:  # webargs names its argument maps' type only for type checkers
    from webargs._types import ArgMap


class ArgumentsParser(FlaskParser):
    """webargs' parser, answering 400 (not 500) to every JSON body the decoder refuses, and building
    each schema once.

    webargs turns a ``JSONDecodeError`` into its 400 but lets the decoder's other errors out: a
    ``RecursionError`` (nested too deeply) and a ``ValueError`` (an integer of over 4,300 digits).
    Given a schema class (as flask-smorest passes its pagination parameters, and the routes their
    schemas), webargs builds an instance per request, on the hot paths too.
    """

    def parse(self, argmap: "ArgMap[flask.Request]", req: flask.Request | None = None, **kwargs: Any) -> Any:
        if isinstance(argmap, type):
            argmap = _schema_instance(argmap)
        return super().parse(argmap, req, **kwargs)

    def load_json(self, req: flask.Request, schema: marshmallow.Schema) -> Any:
        try:
            return super().load_json(req, schema)
        except (RecursionError, ValueError) as error:
            abort(400, exc=error, messages={"json": ["Invalid JSON body."]})


@functools.cache
def _schema_instance(schema_class: type[marshmallow.Schema]) -> marshmallow.Schema:
    """One instance per schema class: marshmallow schemas keep no state between loads."""
    return schema_class()
