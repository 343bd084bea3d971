"""Configuration: defaults, then `.env`, then the environment, then explicit overrides.

The service's own settings are read from plain variables (``DATABASE_URL``...); every
other Flask or extension setting comes from ``FLASK_<KEY>`` through Flask's
``from_prefixed_env``. Imports only the standard library and python-dotenv: gunicorn's master
process reads ``web_workers`` before its gevent workers patch the standard library (Flask's
``Config`` is imported where a process without an app asks for one).
"""

from __future__ import annotations

import copy
import logging
import os
import secrets
from collections.abc import Mapping, MutableMapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from dotenv import find_dotenv, load_dotenv

if TYPE_CHECKING:
    from flask import Config

# Plain environment variable -> Flask config key.
PLAIN_VARIABLES = {
    "DATABASE_URL": "SQLALCHEMY_DATABASE_URI",
    "REDIS_URL": "REDIS_URL",
    "RABBITMQ_URL": "RABBITMQ_URL",
    "JWT_SECRET_KEY": "JWT_SECRET_KEY",
    "CORS_ORIGINS": "CORS_ORIGINS",
    "PROCESSING_DELAY_SECONDS": "PROCESSING_DELAY_SECONDS",
}

log = logging.getLogger(__name__)

# Values of the example files and the obvious ones, refused as secrets and passwords. RabbitMQ's
# guest/guest is not among them: RabbitMQ accepts it over loopback only.
EXAMPLE_SECRETS = {
    "change-me",
    "changeme",
    "secret",
    "password",
    "admin",
    "orders",
    "dev-only-insecure-jwt-secret-change-me",
}
MIN_SECRET_LENGTH = 32  # HMAC-SHA256 keys shorter than the hash are weak
# 32 x "a" is long but guessable; 10 keeps hex secrets (16 symbols) safely above it.
MIN_SECRET_DISTINCT_CHARACTERS = 10


class Defaults:
    SQLALCHEMY_DATABASE_URI = "postgresql://postgres@127.0.0.1:5432/orders"
    # Per process. A web worker holds at most pool_size + max_overflow connections: 10, sized from
    # the connection budget (docs/configuration.md); relays, consumers and RQ workers use one.
    SQLALCHEMY_ENGINE_OPTIONS = {
        "pool_pre_ping": True,
        "pool_size": 5,
        "max_overflow": 5,
        "pool_timeout": 10,
        "connect_args": {"connect_timeout": 3},
    }
    REDIS_URL = "redis://127.0.0.1:6379/0"
    REDIS_SOCKET_TIMEOUT = 1.0
    RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
    CORS_ORIGINS = ""
    PROCESSING_DELAY_SECONDS = 2.0
    HEALTH_CHECK_TIMEOUT = 2.0
    HEALTH_CACHE_SECONDS = 2.0  # /health/ready reuses results this long: probes cannot load the broker
    # Events and jobs
    EVENTS_NAMESPACE = ""  # prefix of every RabbitMQ name (tests use their own)
    RABBITMQ_HEARTBEAT_SECONDS = 30
    RELAY_BATCH_SIZE = 100
    RELAY_SWEEP_SECONDS = 5.0
    RELAY_GATHER_SECONDS = 0.02  # a batch starts at most this often: notifications in between wait
    CONSUMER_PREFETCH = 20
    CONSUMER_MAX_REDELIVERIES = 5  # then the message is dead-lettered
    RQ_QUEUE = "orders"
    JOB_RETRY_INTERVALS = [2, 10, 30]  # seconds before each of the 3 retries
    JOB_TIMEOUT_SECONDS = 30  # a process_order run taking longer is stopped (and retried)
    # A started job not finished this long after its timeout belongs to a worker that died.
    JOB_ABANDONED_GRACE_SECONDS = 10
    # The reconciler (in the relay's loop): orders unprocessed this long get their job again.
    RECONCILE_AFTER_SECONDS = 60
    RECONCILE_INTERVAL_SECONDS = 30
    # Housekeeping (also in the relay's loop): published outbox events are kept this long.
    OUTBOX_RETENTION_HOURS = 72
    HOUSEKEEPING_INTERVAL_SECONDS = 60
    RECONNECT_MAX_SECONDS = 30.0
    HEARTBEAT_FILE = None  # touched by the relay's and consumer's loops, for health checks
    LOG_LEVEL = "INFO"
    LOG_FORMAT = "json"  # or "text", for humans
    METRICS_PORT = 0  # relay, consumer, worker: their metrics port (0: off)
    METRICS_ADDRESS = "0.0.0.0"  # the address it listens on (all interfaces: a container's default)
    METRICS_READ_TIMEOUT = 2.0  # seconds each state gauge read may take at a scrape

    MAX_CONTENT_LENGTH = 64 * 1024
    # The deepest page number of a list (an OFFSET, paid in proportion); deeper, the cursor.
    LIST_MAX_PAGE = 100
    # Rate limits (flask-limiter), per user with a valid access token, else per client IP.
    RATELIMIT_ENABLED = True
    RATELIMIT_APPLICATION = "100/minute"  # over all endpoints together
    RATELIMIT_REGISTER = "5/minute"
    RATELIMIT_TOKEN = "10/minute"  # per client address
    RATELIMIT_TOKEN_PER_USERNAME = "10/hour"  # login attempts per account, any address; success given back
    RATELIMIT_ORDER_CREATE = "30/minute"
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_KEY_PREFIX = "ratelimit"
    RATELIMIT_SWALLOW_ERRORS = True  # the limiter's Redis down: serve, never 500
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    TRUSTED_PROXIES = 0  # reverse proxies in front that set X-Forwarded-For
    # argon2id cost (argon2-cffi's defaults): passes and memory in KiB.
    PASSWORD_HASH_TIME_COST = 3
    PASSWORD_HASH_MEMORY_COST = 65536
    # Hashes at once per web worker (gunicorn runs one per core): logins use every core while
    # each worker's event loop keeps answering.
    PASSWORD_HASH_CONCURRENCY = 1

    JWT_SECRET_KEY = None  # required; a random one per run in debug mode
    JWT_ACCESS_TOKEN_EXPIRES = timedelta(minutes=15)
    JWT_REFRESH_TOKEN_EXPIRES = timedelta(days=30)
    JWT_REFRESH_FAMILY_MAX_DAYS = 30  # a login's refresh tokens rotate this long at most
    JWT_TOKEN_LOCATION = ["headers"]
    # How long a process remembers that a token's user exists (a deleted user's token is a 401).
    USER_EXISTS_CACHE_SECONDS = 60

    API_TITLE = "Orders service"
    API_VERSION = "1.0"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    OPENAPI_SWAGGER_UI_URL = "/docs/assets/"
    OPENAPI_SWAGGER_UI_CONFIG = {"persistAuthorization": False, "tryItOutEnabled": True}


def load_config(config: Config, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill a Flask ``config`` in precedence order and normalise the values."""
    load_dotenv(find_dotenv(usecwd=True), override=False)  # the real environment wins
    # A copy: FLASK_<KEY>__<NESTED> settings change nested values in place, and must not change
    # the defaults of every later app in the process.
    config.from_mapping(
        copy.deepcopy({key: getattr(Defaults, key) for key in dir(Defaults) if key.isupper()})
    )
    for variable, key in PLAIN_VARIABLES.items():
        if variable in os.environ:
            config[key] = os.environ[variable]
    config.from_prefixed_env()
    config.update(overrides or {})

    config["SQLALCHEMY_DATABASE_URI"] = psycopg2_url(config["SQLALCHEMY_DATABASE_URI"])
    config["PROCESSING_DELAY_SECONDS"] = float(config["PROCESSING_DELAY_SECONDS"])
    for key in ("JWT_ACCESS_TOKEN_EXPIRES", "JWT_REFRESH_TOKEN_EXPIRES"):
        if type(config[key]) is int:  # seconds, e.g. FLASK_JWT_ACCESS_TOKEN_EXPIRES=900
            config[key] = timedelta(seconds=config[key])
    if isinstance(config["CORS_ORIGINS"], str):
        config["CORS_ORIGINS"] = [o.strip() for o in config["CORS_ORIGINS"].split(",") if o.strip()]
    # The limiter shares the service's Redis unless told otherwise; it falls back to memory.
    config.setdefault("RATELIMIT_STORAGE_URI", config["REDIS_URL"])
    timeout = config["REDIS_SOCKET_TIMEOUT"]
    config.setdefault(
        "RATELIMIT_STORAGE_OPTIONS", {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    )
    config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK", config["RATELIMIT_APPLICATION"])
    if config.get("JWT_PRIVATE_KEY") and config.get("JWT_PUBLIC_KEY"):
        config.setdefault("JWT_ALGORITHM", "RS256")
    check_production_safety(config)
    check_example_passwords(config)


def load_standalone_config(overrides: Mapping[str, Any] | None = None) -> Config:
    """The configuration of a process without a Flask app (the consumer), loaded as the app's is."""
    from flask import Config

    config = Config(os.path.dirname(__file__))  # the app's root_path
    load_config(config, overrides)
    return config


def web_workers() -> int:
    """gunicorn's worker processes: ``WEB_CONCURRENCY``, else one per core (one if unknown)."""
    return int(os.environ.get("WEB_CONCURRENCY", os.cpu_count() or 1))


def web_connections(config: Mapping[str, Any]) -> int:
    """The most PostgreSQL connections the web may open: workers x (pool_size + max_overflow)."""
    options = config["SQLALCHEMY_ENGINE_OPTIONS"]
    per_worker: int = options["pool_size"] + options["max_overflow"]
    return web_workers() * per_worker


def psycopg2_url(url: str) -> str:
    """Make a plain ``postgresql://`` URL mean psycopg2, whatever SQLAlchemy's default driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)
    return url


def check_production_safety(config: MutableMapping[str, Any]) -> None:
    """Refuse a missing, known or weak HMAC secret; in debug mode, use a random one instead.

    Never skipped: a public development secret would let anyone forge an admin's token.
    """
    if not config.get("JWT_ALGORITHM", "HS256").startswith("HS"):
        return  # RS256: tokens are signed with the private key
    problem = weak_secret_problem(config.get("JWT_SECRET_KEY") or "")
    if problem and config.get("DEBUG"):
        config["JWT_SECRET_KEY"] = secrets.token_urlsafe(48)
        log.warning(
            "JWT_SECRET_KEY %s: using a random secret for this run (debug mode); tokens will not "
            "survive a restart or be accepted by another process",
            problem,
        )
    elif problem:
        raise RuntimeError(
            f"JWT_SECRET_KEY {problem}; set a random secret of at least {MIN_SECRET_LENGTH} "
            "characters (python -c 'import secrets; print(secrets.token_urlsafe(48))')."
        )


def weak_secret_problem(secret: str) -> str | None:
    """Why ``secret`` must not sign tokens, or None."""
    if not secret:
        return "is missing"
    if secret.lower() in EXAMPLE_SECRETS:
        return "is a known example value"
    if len(secret) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    if len(set(secret)) < MIN_SECRET_DISTINCT_CHARACTERS:
        return f"has fewer than {MIN_SECRET_DISTINCT_CHARACTERS} distinct characters"
    return None


def check_example_passwords(config: Mapping[str, Any]) -> None:
    """Outside debug mode, refuse the example passwords of the stack where this process sees them:
    in the connection URLs, and rq-dashboard's login when it is in the environment (``.env``)."""
    if config.get("DEBUG"):
        return
    urls = {
        "DATABASE_URL": "SQLALCHEMY_DATABASE_URI",
        "REDIS_URL": "REDIS_URL",
        "RABBITMQ_URL": "RABBITMQ_URL",
    }
    passwords = {variable: urlsplit(config[key]).password for variable, key in urls.items()}
    passwords["RQ_DASHBOARD_PASSWORD"] = os.environ.get("RQ_DASHBOARD_PASSWORD")
    examples = sorted(
        name
        for name, password in passwords.items()
        if password and unquote(password).lower() in EXAMPLE_SECRETS
    )
    if examples:
        raise RuntimeError(
            f"{', '.join(examples)} use an example password; set random ones "
            "(make .env writes them; python -c 'import secrets; print(secrets.token_hex(24))')."
        )
