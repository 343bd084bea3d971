"""Creating the service's PostgreSQL database when it is missing."""

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_database_if_missing(url):
    """Create the database named in ``url``; return True if it had to be created.

    Connects to the server's ``postgres`` maintenance database. Raises SQLAlchemy's
    ``OperationalError`` when the server cannot be reached.
    """
    url = make_url(url)
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
