"""Fixtures against the real PostgreSQL and Redis, in names of the tests' own.

The test database (``TEST_DATABASE_URL``) is dropped and migrated from scratch once per
run; every test gets a fresh app, and the tables and Redis db (``TEST_REDIS_URL``) are
emptied after it. Nothing touches the data of a running stack.
"""

import pytest
from flask_migrate import upgrade

from helpers import TEST_DATABASE_URL, bearer, login, make_app, register
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from orders_app.database import create_database_if_missing
from orders_app.extensions import cache_redis, db

@pytest.fixture(scope="session")
def database():
    """A freshly created and migrated test database."""
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
def app(database):
    app = make_app()
    yield app
    with app.app_context():
        db.session.remove()
        table_names = ", ".join(db.metadata.tables)
        with db.engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {table_names} RESTART IDENTITY CASCADE"))
        db.engine.dispose()
        cache_redis.client.flushdb()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def alice(client):
    """A registered user with a fresh token pair: ``{"user", "tokens", "headers"}``."""
    user = register(client, "alice@example.com")
    tokens = login(client, "alice@example.com")
    return {"user": user, "tokens": tokens, "headers": bearer(tokens["access_token"])}
