"""The tests' own names on the shared servers, and the app and configuration built on them."""

import os

from orders_app import create_app
from orders_app.config import load_standalone_config, psycopg2_url

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEST_DATABASE_URL = psycopg2_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/orders_test")
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
# Each run of the suite may take names of its own, so that two checkouts can test side by side.
TEST_EVENTS_NAMESPACE = os.environ.get("TEST_EVENTS_NAMESPACE", "test.")
PASSWORD = "correct horse battery"


def app_config(**overrides):
    """The tests' configuration overrides: their own databases, broker names and cheap settings."""
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "RABBITMQ_URL": TEST_RABBITMQ_URL,
        "JWT_SECRET_KEY": TEST_SECRET,
        "HEALTH_CHECK_TIMEOUT": 1.0,
        "EVENTS_NAMESPACE": TEST_EVENTS_NAMESPACE,
        "PROCESSING_DELAY_SECONDS": 0,
        "RECONNECT_MAX_SECONDS": 1.0,
        # Cheap hashing keeps the suite fast; test_auth checks the production defaults.
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_COST": 1024,
    }
    config.update(overrides)
    return config


def make_app(**overrides):
    return create_app(app_config(**overrides))


def make_config(**overrides):
    """The tests' configuration for a process without an app (the consumer)."""
    return load_standalone_config(app_config(**overrides))
