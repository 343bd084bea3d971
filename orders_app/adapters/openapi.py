"""What the OpenAPI document says beyond what flask-smorest infers: an apispec plugin, and
the ``Api`` mixin that installs it."""

from http import HTTPStatus
from typing import Any, Protocol, cast

import flask_smorest.pagination
from apispec import APISpec, BasePlugin
from flask import Flask
from marshmallow import fields
from werkzeug.routing import Rule

# Answers any operation may give, whatever its own decorators declare.
BAD_BODY = {400: HTTPStatus.BAD_REQUEST.name, 413: HTTPStatus.REQUEST_ENTITY_TOO_LARGE.name}
RATE_LIMITED = {429: HTTPStatus.TOO_MANY_REQUESTS.name}
DATABASE_DOWN = {503: HTTPStatus.SERVICE_UNAVAILABLE.name}


class PaginationMetadataSchema(flask_smorest.pagination.PaginationMetadataSchema):
    """X-Pagination: flask-smorest's page numbers, and the cursor of keyset pagination."""

    next_cursor = fields.String(
        metadata={"description": "Where the next page starts: send it as ?cursor= (absent on the last page)."}
    )
    total = fields.Int(
        metadata={"description": "Total number of items; absent when there are more than the API counts."}
    )


class DocumentedBlueprint(Protocol):
    """What ``CommonAnswersPlugin`` reads of a blueprint (``smorest.Blueprint`` has both)."""

    RATE_LIMITED: bool
    USES_DATABASE: bool


class CommonAnswersPlugin(BasePlugin):
    """Documents bad or oversized bodies, rate limits and outages on every operation, If-Match
    as optional (flask-smorest documents it as required, with a 428, for every ``@etag`` PATCH),
    and how deep a page number may go (``LIST_MAX_PAGE``).

    A blueprint whose endpoints are never limited, or never touch PostgreSQL, says so with
    ``RATE_LIMITED = False`` or ``USES_DATABASE = False``.
    """

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app

    # apispec always passes path and operations, and flask-smorest the rule too.
    def operation_helper(  # type: ignore[override]
        self, path: str | None, operations: dict[str, dict[str, Any]], *, rule: Rule, **kwargs: Any
    ) -> None:
        blueprint = cast(DocumentedBlueprint, self.app.blueprints[rule.endpoint.rpartition(".")[0]])
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            common = {
                **(BAD_BODY if "requestBody" in operation else {}),
                **(RATE_LIMITED if blueprint.RATE_LIMITED else {}),
                **(DATABASE_DOWN if blueprint.USES_DATABASE else {}),
            }
            for status, name in common.items():
                responses.setdefault(status, name)
            responses.pop(HTTPStatus.PRECONDITION_REQUIRED, None)
            for parameter in operation.get("parameters", []):
                if isinstance(parameter, dict) and parameter.get("name") == "page":
                    max_page = parameter["schema"]["maximum"] = self.app.config["LIST_MAX_PAGE"]
                    parameter["description"] = (
                        f"At most {max_page} (LIST_MAX_PAGE): a page number makes the database walk "
                        "past every earlier item. Deeper, follow X-Pagination's next_cursor (cursor)."
                    )

    def parameter_helper(self, parameter: dict[str, Any], **kwargs: Any) -> dict[str, Any] | None:
        return {"required": False} if parameter.get("name") == "If-Match" else None


class DocumentMixin:
    """flask-smorest's ``Api``, publishing this service's document: ``CommonAnswersPlugin``, no
    catch-all "default" response (each operation documents every status it can answer), and
    X-Pagination documented as JSON content."""

    DEFAULT_ERROR_RESPONSE_NAME = None
    spec: APISpec  # flask-smorest's Api sets it

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        plugins = {"extra_plugins": [CommonAnswersPlugin(app)]}
        # flask-smorest's Api (untyped) follows this mixin in the MRO.
        super().init_app(app, spec_kwargs={**plugins, **(spec_kwargs or {})})  # type: ignore[misc]

    def _register_pagination_header(self) -> None:
        """Private, for want of a public hook (a plugin may add to a header, not take its schema
        away); pinned in tests/test_library_contracts.py."""
        header = {
            "description": "Pagination metadata (JSON)",
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        }
        self.spec.components.header("PAGINATION", header, lazy=True)
