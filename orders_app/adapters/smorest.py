"""flask-smorest's ``Blueprint`` and ``Api`` as this service uses them: If-Match optional, lists
paged by number or by cursor, auth and error answers declared in one place, one error body.

Tested in tests/test_library_contracts.py, tests/test_orders_list.py and tests/test_orders_patch.py.
"""

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import flask_smorest
from flask_jwt_extended import jwt_required
from flask_smorest.error_handler import ErrorSchema

from ..errors import ErrorBodyMixin
from .openapi import DocumentMixin
from .webargs_parser import ArgumentsParser

SECURITY_SCHEME = "OAuth2PasswordBearer"

Item = TypeVar("Item")
View = Callable[..., Any]
ViewDecorator = Callable[[View], View]


@dataclass(frozen=True)
class Listing(Generic[Item]):
    """One page of a list, as a view under ``Blueprint.paginate`` may return it: its items, and what
    X-Pagination says of them beyond flask-smorest's page numbers."""

    items: list[Item]
    total: int | None  # None: not counted to the end (no total, total_pages or last_page)
    next_cursor: str | None = None  # where the next page starts; None on the last page
    by_cursor: bool = False  # asked by cursor: no page numbers either
    max_page: int | None = None  # the deepest page number allowed: none deeper is advertised


def page_numbers(
    page: int, page_size: int, total: int | None, more: bool, max_page: int | None = None
) -> dict[str, int]:
    """X-Pagination's page numbers as flask-smorest writes them (``_make_pagination_metadata``,
    which builds a marshmallow schema per request to dump seven integers), and for an uncounted
    list (``total`` None): ``more`` tells whether a page follows. No page past ``max_page`` (the
    deepest a page number may go) is named: neither as the last page nor as the next."""
    if total == 0:
        return {"total_pages": 0}
    numbers: dict[str, int] = {}
    if total is not None:
        total_pages = last_page = (total - 1) // page_size + 1
        if max_page is not None:
            last_page = min(last_page, max_page)
        numbers.update(total_pages=total_pages, first_page=1, last_page=last_page)
        if page > last_page:
            return numbers
        more = page < last_page
    else:
        numbers["first_page"] = 1
        more = more and (max_page is None or page < max_page)
    numbers["page"] = page
    if page > 1:
        numbers["previous_page"] = page - 1
    if more:
        numbers["next_page"] = page + 1
    return numbers


class Blueprint(flask_smorest.Blueprint):
    """The project's blueprint: auth and error responses declared in one place."""

    ARGUMENTS_PARSER = ArgumentsParser()
    PAGINATION_ARGUMENTS_PARSER = ARGUMENTS_PARSER
    # What the OpenAPI document adds to each operation (see openapi.CommonAnswersPlugin):
    RATE_LIMITED = True  # its endpoints can answer 429
    USES_DATABASE = True  # its endpoints answer 503 while PostgreSQL is unreachable
    # ``json_or_form`` bodies are documented as forms (the OAuth2 token endpoint).
    DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
        **flask_smorest.Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
        "json_or_form": "application/x-www-form-urlencoded",
    }

    # flask-smorest has no public switch for an optional If-Match (METHODS_NEEDING_CHECK_ETAG
    # would also stop check_etag): two private methods.
    def _check_precondition(self) -> None:
        """If-Match is optional in this API: checked when sent, never required (no 428)."""

    def _verify_check_etag(self) -> None:
        """Views call ``check_etag`` only when If-Match was sent: nothing to verify afterwards."""

    def paginate(self, pager: type | None = None, **kwargs: Any) -> ViewDecorator:
        """flask-smorest's ``paginate``; a view paginating itself may also return a ``Listing``
        instead of setting ``item_count``: its X-Pagination then carries the cursor, and leaves
        out what an uncounted list cannot know."""
        paginate = super().paginate(pager, **kwargs)
        if pager is not None:
            return paginate

        def decorator(view: View) -> View:
            @functools.wraps(view)
            def listed(*args: Any, pagination_parameters: Any, **view_kwargs: Any) -> Any:
                result = view(*args, pagination_parameters=pagination_parameters, **view_kwargs)
                if isinstance(result, Listing):  # flask-smorest writes X-Pagination once this is set
                    total = result.total
                    pagination_parameters.item_count = len(result.items) if total is None else total
                return result

            return paginate(listed)

        return decorator

    def _set_pagination_metadata(
        self, page_params: Any, result: Any, headers: dict[str, str] | None
    ) -> tuple[Any, dict[str, str]]:
        """flask-smorest's X-Pagination (its documented override point), from a ``Listing``."""
        if not isinstance(result, Listing):
            return super()._set_pagination_metadata(page_params, result, headers)
        metadata: dict[str, int | str] = {}
        if result.total is not None:
            metadata["total"] = result.total
        if not result.by_cursor:
            more = result.next_cursor is not None
            metadata.update(
                page_numbers(page_params.page, page_params.page_size, result.total, more, result.max_page)
            )
        if result.next_cursor is not None:
            metadata["next_cursor"] = result.next_cursor
        return result.items, {**(headers or {}), self.PAGINATION_HEADER_NAME: json.dumps(metadata)}

    def error(self, status_code: int, description: str) -> ViewDecorator:
        """Document an error answer with the common error body."""
        return self.alt_response(status_code, schema=ErrorSchema, description=description)

    def auth_required(self, *, refresh: bool = False) -> ViewDecorator:
        """Require a valid (access, or with ``refresh`` a refresh) token, and document it."""
        kind = "refresh" if refresh else "access"

        def decorator(func: View) -> View:
            func = jwt_required(refresh=refresh)(func)
            func = self.doc(security=[{SECURITY_SCHEME: []}])(func)
            return self.error(401, f"Missing, invalid, expired or revoked {kind} token")(func)

        return decorator


class Api(ErrorBodyMixin, DocumentMixin, flask_smorest.Api):
    """flask-smorest's ``Api`` with this service's error body and OpenAPI document."""
