"""Does PostgreSQL, Redis or RabbitMQ answer, as a configuration names it, within a timeout?

The one probe of each dependency for readiness (``/health/ready``), ``flask prestart`` and the
container health check (``orders_app.healthcheck``). ``config`` is a Flask configuration: the
app's, or ``load_standalone_config()``'s. Each probe opens a connection of its own and closes it,
so it tells about the server, not about the state of a process's pools. A probe raises the
driver's error when the dependency does not answer.
"""

import math
from collections.abc import Mapping
from contextlib import closing
from typing import Any

import pika
import psycopg2
import redis

from .adapters import redis_client
from .database import libpq_url
from .events.topology import connection_parameters


def check_postgresql(config: Mapping[str, Any], timeout: float) -> None:
    """``SELECT 1`` on the database of ``SQLALCHEMY_DATABASE_URI``, connected as the app's engine
    connects (its ``connect_args``), within ``timeout`` seconds."""
    connect_args = {
        **config["SQLALCHEMY_ENGINE_OPTIONS"].get("connect_args", {}),
        "connect_timeout": math.ceil(timeout),  # libpq takes whole seconds
    }
    dsn = libpq_url(config["SQLALCHEMY_DATABASE_URI"])
    with closing(psycopg2.connect(dsn, **connect_args)) as connection:
        connection.cursor().execute("SELECT 1")


def redis_connection(config: Mapping[str, Any], timeout: float) -> redis.Redis:
    """A client of ``REDIS_URL`` as the service builds them, giving up after ``timeout`` seconds
    (instead of ``REDIS_SOCKET_TIMEOUT``); it returns bytes, as RQ needs."""
    return redis_client.connect({"REDIS_URL": config["REDIS_URL"], "REDIS_SOCKET_TIMEOUT": timeout})


def check_redis(config: Mapping[str, Any], timeout: float) -> None:
    """``PING`` on ``REDIS_URL``."""
    with closing(redis_connection(config, timeout)) as client:
        client.ping()


def check_rabbitmq(config: Mapping[str, Any], timeout: float) -> None:
    """An AMQP connection to ``RABBITMQ_URL``, opened and closed."""
    parameters = connection_parameters(config, timeout)
    parameters.stack_timeout = timeout  # the handshake too: a broker that accepts and hangs fails as fast
    pika.BlockingConnection(parameters).close()
