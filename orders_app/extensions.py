"""Extension singletons, created once here and bound to an app in ``create_app``."""

import functools
import json
import logging

import flask_limiter
import flask_smorest
import orjson
import redis
from flask import current_app, request
from flask_cors import CORS
from flask_jwt_extended import jwt_required
from flask_migrate import Migrate
from flask_smorest.error_handler import ErrorSchema
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase
from webargs.flaskparser import FlaskParser, abort

from . import redis_client
from .auth.jwt_manager import JWTManager
from .errors import RETRY_LATER, ErrorBodyMixin
from .openapi import DocumentMixin
from .protection import ADDRESS_KEYED_ENDPOINTS, configured_limit, is_exempt, rate_limit_key

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    pass


SECURITY_SCHEME = "OAuth2PasswordBearer"


class ArgumentsParser(FlaskParser):
    """webargs' parser, answering 400 (not 500) to every JSON body the decoder refuses, and building
    each schema once.

    webargs turns a ``JSONDecodeError`` into its 400 but lets the decoder's other errors out: a
    ``RecursionError`` (nested too deeply) and a ``ValueError`` (an integer of over 4,300 digits).
    Given a schema class (as flask-smorest passes its pagination parameters, and the routes their
    schemas), webargs builds an instance per request: 0.1 ms each on the hot paths.
    """

    def parse(self, argmap, req=None, **kwargs):
        if isinstance(argmap, type):
            argmap = _schema_instance(argmap)
        return super().parse(argmap, req, **kwargs)

    def load_json(self, req, schema):
        try:
            return super().load_json(req, schema)
        except (RecursionError, ValueError) as error:
            abort(400, exc=error, messages={"json": ["Invalid JSON body."]})


@functools.cache
def _schema_instance(schema_class):
    """One instance per schema class: marshmallow schemas keep no state between loads."""
    return schema_class()


def page_numbers(page, page_size, total, more, max_page=None):
    """X-Pagination's page numbers as flask-smorest writes them (``_make_pagination_metadata``,
    which builds a marshmallow schema per request to dump seven integers), and for an uncounted
    list (``total`` None): ``more`` tells whether a page follows. No page past ``max_page`` (the
    deepest a page number may go) is named: neither as the last page nor as the next."""
    if total == 0:
        return {"total_pages": 0}
    numbers = {}
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
    # would also stop check_etag): two private methods, pinned in tests/test_library_contracts.py.
    def _check_precondition(self):
        """If-Match is optional in this API: checked when sent, never required (no 428)."""

    def _verify_check_etag(self):
        """Views call ``check_etag`` only when If-Match was sent: nothing to verify afterwards."""

    def _set_pagination_metadata(self, page_params, result, headers):
        """flask-smorest's X-Pagination (its documented override point), for views that also page
        by cursor. Beside ``item_count`` such a view sets on the pagination parameters:
        ``total_known`` (False: the view stopped counting, so no total, total_pages or last_page),
        ``next_cursor`` (where the next page starts; None on the last page), ``by_cursor`` (the
        page was asked by cursor: no page numbers either) and ``max_page`` (the deepest page number
        allowed: none deeper is advertised).
        """
        metadata = {}
        if page_params.total_known:
            metadata["total"] = page_params.item_count
        if not page_params.by_cursor:
            total = page_params.item_count if page_params.total_known else None
            more = page_params.next_cursor is not None
            numbers = page_numbers(page_params.page, page_params.page_size, total, more, page_params.max_page)
            metadata.update(numbers)
        if page_params.next_cursor is not None:
            metadata["next_cursor"] = page_params.next_cursor
        return result, {**(headers or {}), self.PAGINATION_HEADER_NAME: json.dumps(metadata)}

    def error(self, status_code, description):
        """Document an error answer with the common error body."""
        return self.alt_response(status_code, schema=ErrorSchema, description=description)

    def auth_required(self, *, refresh=False):
        """Require a valid (access, or with ``refresh`` a refresh) token, and document it."""
        kind = "refresh" if refresh else "access"

        def decorator(func):
            func = jwt_required(refresh=refresh)(func)
            func = self.doc(security=[{SECURITY_SCHEME: []}])(func)
            return self.error(401, f"Missing, invalid, expired or revoked {kind} token")(func)

        return decorator


class Limiter(flask_limiter.Limiter):
    """flask-limiter's limiter, shared by every app of the process (the routes' decorators are
    bound to it), and tests build many apps, some with an unreachable Redis on purpose.

    flask-limiter has no public way to clear its "storage is down" flag: a new app would count in
    memory until its backoff (up to 32 s) lets it look at Redis again, so ``init_app`` clears it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Filters are registered once (create_app runs many times in the tests), and an app built
        # with RATELIMIT_ENABLED false stays unlimited when a later app enables the shared limiter.
        self.request_filter(is_exempt)
        self.request_filter(lambda: not current_app.config["RATELIMIT_ENABLED"])

    def init_app(self, app):
        # give_back counts down, which only a fixed window (flask-limiter's default) can undo.
        if app.config.get("RATELIMIT_STRATEGY", "fixed-window") != "fixed-window":
            raise RuntimeError("RATELIMIT_STRATEGY must be fixed-window: logins give their attempt back")
        self._storage_dead = False
        super().init_app(app)

    def give_back(self, key_func):
        """Take back the hit this request made on its limits keyed by ``key_func`` (fixed windows,
        the default strategy, count down). Logged, not raised, if the storage fails meanwhile."""
        key = key_func()
        for limit in self.current_limits:
            if key in limit.request_args:
                try:
                    self.limiter.hit(limit.limit, *limit.request_args, cost=-1)
                except self.storage.base_exceptions as error:
                    log.warning("Could not give back a rate-limit hit (%r)", error)

    def _check_request_limit(self, callable_name=None, in_middleware=True):
        """flask-limiter's check, failing closed where passwords are tried: while its storage is
        down (counting in memory), ``/token`` and ``/register/`` answer 503, as the in-memory
        fallback holds none of their limits. Private in flask-limiter (the one hook both its
        ``before_request`` and its decorators call): pinned in tests/test_library_contracts.py.
        """
        super()._check_request_limit(callable_name, in_middleware)
        if self._storage_dead and request.endpoint in ADDRESS_KEYED_ENDPOINTS:
            flask_smorest.abort(503, message="Rate limits unavailable; retry shortly", headers=RETRY_LATER)


class FlaskRedis:
    """One redis-py client per app (``redis_client.connect``)."""

    def __init__(self, name, **options):
        self.name = name
        self.options = options

    def init_app(self, app):
        app.extensions[self.name] = redis_client.connect(app.config, **self.options)

    @property
    def client(self) -> redis.Redis:
        return current_app.extensions[self.name]


# Objects stay readable after commit (no reload query); sessions live for one request. JSONB
# columns are written and read with orjson (a page of orders parses 20 of them).
db = SQLAlchemy(
    model_class=Base,
    session_options={"expire_on_commit": False},
    engine_options={
        "json_serializer": lambda data: orjson.dumps(data).decode(),
        "json_deserializer": orjson.loads,
    },
)
migrate = Migrate()
jwt = JWTManager()
# Limits given as callables are read from the configuration of the app serving the request:
# given as strings, the first app's values would hold for every later one.
limiter = Limiter(
    key_func=rate_limit_key,
    application_limits=[configured_limit("RATELIMIT_APPLICATION")],
    in_memory_fallback=[configured_limit("RATELIMIT_IN_MEMORY_FALLBACK")],
)
cors = CORS()


class Api(ErrorBodyMixin, DocumentMixin, flask_smorest.Api):
    """flask-smorest's ``Api`` with this service's error body and OpenAPI document."""


api = Api()
cache_redis = FlaskRedis("cache_redis", decode_responses=True)
# RQ needs bytes: never a client with decode_responses.
queue_redis = FlaskRedis("queue_redis")
