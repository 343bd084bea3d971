"""Plain helpers and settings shared by the tests."""

import base64
import json
import os
import socket
from contextlib import contextmanager

import jwt

from orders_app import create_app
from orders_app.config import psycopg2_url

TEST_DATABASE_URL = psycopg2_url(
    os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/orders_test")
)
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_RABBITMQ_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
TEST_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
PASSWORD = "correct horse battery"


def closed_port_url(scheme, path=""):
    """A URL on a local port where nothing listens: a dependency that is down."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"{scheme}://127.0.0.1:{port}{path}"


def make_app(**overrides):
    config = {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": TEST_DATABASE_URL,
        "REDIS_URL": TEST_REDIS_URL,
        "RABBITMQ_URL": TEST_RABBITMQ_URL,
        "JWT_SECRET_KEY": TEST_SECRET,
        "HEALTH_CHECK_TIMEOUT": 1.0,
        # Cheap hashing keeps the suite fast; test_auth checks the production defaults.
        "PASSWORD_HASH_TIME_COST": 1,
        "PASSWORD_HASH_MEMORY_COST": 1024,
    }
    config.update(overrides)
    return create_app(config)


def register(client, email, password=PASSWORD):
    response = client.post("/register/", json={"email": email, "password": password})
    assert response.status_code == 201, response.json
    return response.json


def login(client, email, password=PASSWORD):
    response = client.post("/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def forge_token(payload, key=TEST_SECRET, algorithm="HS256"):
    """A JWT signed (or, with ``algorithm="none"``, not signed) by whoever holds ``key``."""
    if algorithm == "none":
        segments = [{"alg": "none", "typ": "JWT"}, payload]
        encoded = [base64.urlsafe_b64encode(json.dumps(s).encode()).rstrip(b"=") for s in segments]
        return b".".join(encoded).decode() + "."
    return jwt.encode(payload, key, algorithm=algorithm)


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


@contextmanager
def silent_server():
    """A port that accepts connections and never answers: a dependency that hangs."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield server.getsockname()[1]


def place_order(client, headers, items=None, **extra_headers):
    body = {"items": items or [{"name": "Bread", "quantity": 2, "price": "10.50"}]}
    response = client.post("/orders/", json=body, headers={**headers, **extra_headers})
    assert response.status_code == 201, response.json
    return response.json
