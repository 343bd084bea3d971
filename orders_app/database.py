"""PostgreSQL helpers: the service's database URL as libpq takes it, creating the database when it
is missing, and connections whose statements give up after a timeout (metrics must never hang on
a locked table).

It imports SQLAlchemy only, not the app's extensions: the container health check uses it."""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import URL, make_url


def libpq_url(url: str | URL) -> str:
    """A SQLAlchemy database URL (``postgresql+psycopg2://...``, a string or a ``URL``) as psycopg2
    and libpq take it: without the driver name."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def bounded_connection(engine: Engine, timeout: float) -> Iterator[Connection]:
    """A connection of ``engine`` whose statements give up after ``timeout`` seconds (this transaction)."""
    with engine.connect() as connection:  # rolled back on exit: the setting goes with it
        milliseconds = str(int(timeout * 1000))
        connection.execute(text("SELECT set_config('statement_timeout', :ms, true)"), {"ms": milliseconds})
        yield connection


def create_database_if_missing(url: str | URL) -> bool:
    """Create the database named in ``url``; return True if it had to be created.

    Connects to the server's ``postgres`` maintenance database. Raises SQLAlchemy's
    ``OperationalError`` when the server cannot be reached.
    """
    url = make_url(url)
    if url.database is None:
        raise ValueError(f"{url!r} names no database")
    engine = create_engine(
        url.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": 3},
    )
    try:
        with engine.connect() as connection:
            exists = connection.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            )
            if not exists:
                # Identifiers cannot be bound parameters: quote it with the dialect's rules.
                quoted = engine.dialect.identifier_preparer.quote(url.database)
                connection.execute(text(f"CREATE DATABASE {quoted}"))
            return not exists
    finally:
        engine.dispose()
