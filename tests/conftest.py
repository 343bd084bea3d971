"""Fixtures against the real PostgreSQL and Redis, in names of the tests' own.

The test database (``TEST_DATABASE_URL``) is dropped and migrated from scratch once per
run; every test gets a fresh app, and the tables and Redis db (``TEST_REDIS_URL``) are
emptied after it. Nothing touches the data of a running stack.
"""

import os

import pika
import pytest
import redis
from flask_migrate import upgrade
from sqlalchemy import create_engine, delete, text
from sqlalchemy.engine import make_url

from orders_app.database import create_database_if_missing
from orders_app.events.topology import Topology
from orders_app.extensions import db
from orders_app.models import User

from support.client import bearer, login, register
from support.settings import (
    PASSWORD,
    TEST_DATABASE_URL,
    TEST_EVENTS_NAMESPACE,
    TEST_RABBITMQ_URL,
    TEST_REDIS_URL,
    make_app,
)

# A developer's .env must not leak into the tests (test_config enables it where it is tested).
os.environ["PYTHON_DOTENV_DISABLED"] = "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under ``CI=true`` a skipped test fails: every skip of the suite is a missing tool (nginx,
    Chromium, promtool, a server's binaries) that CI must install, not a test to pass over."""
    report = (yield).get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome, report.longrepr = "failed", f"Skipped under CI=true: {reason}"


@pytest.fixture(scope="session")
def migrated_database():
    """The test database, dropped, created and migrated from scratch once per run."""
    url = make_url(TEST_DATABASE_URL)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        quoted = admin.dialect.identifier_preparer.quote(url.database)
        connection.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    admin.dispose()
    create_database_if_missing(url)
    app = make_app()
    with app.app_context():
        upgrade()
        db.engine.dispose()
    return url


@pytest.fixture
def database(migrated_database):
    """The migrated test database; its tables and the test Redis db are emptied after the test."""
    yield migrated_database
    engine = create_engine(migrated_database)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(db.metadata.tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    redis.Redis.from_url(TEST_REDIS_URL).flushdb()


@pytest.fixture
def rq_redis():
    """A client of the test Redis db as RQ needs it (bytes)."""
    return redis.Redis.from_url(TEST_REDIS_URL)


@pytest.fixture
def topology():
    return Topology.from_config({"EVENTS_NAMESPACE": TEST_EVENTS_NAMESPACE})


@pytest.fixture
def broker(topology):
    """A channel on the test RabbitMQ names, declared and empty before and after the test."""
    connection = pika.BlockingConnection(pika.URLParameters(TEST_RABBITMQ_URL))
    channel = connection.channel()
    topology.declare(channel)
    for queue in (topology.queue, topology.dead_letter_queue):
        channel.queue_purge(queue)
    yield channel
    for queue in (topology.queue, topology.dead_letter_queue):
        channel.queue_purge(queue)
    connection.close()


@pytest.fixture
def app(database):
    app = make_app()
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def signed_up(client, email):
    """A registered user with a fresh token pair: ``{"user", "tokens", "headers"}``."""
    user = register(client, email)
    return {"user": user, **session_of(client, email)}


def session_of(client, email):
    tokens = login(client, email)
    return {"tokens": tokens, "headers": bearer(tokens["access_token"])}


@pytest.fixture
def alice(client):
    return signed_up(client, "alice@example.com")


@pytest.fixture
def bob(client):
    return signed_up(client, "bob@example.com")


@pytest.fixture
def gone(app, client):
    """A user who logged in and was then deleted (by hand: the service never deletes users)."""
    session = signed_up(client, "gone@example.com")
    with app.app_context():
        db.session.execute(delete(User).where(User.id == session["user"]["id"]))
        db.session.commit()
    return session


@pytest.fixture
def admin(app, client):
    """An admin made by ``flask create-admin``, logged in."""
    result = app.test_cli_runner().invoke(
        args=["create-admin", "admin@example.com", "--password-stdin"], input=f"{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    return session_of(client, "admin@example.com")
