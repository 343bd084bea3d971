"""Configuration: configuration from the environment, .env, FLASK_ settings, production safety."""

import os
import time
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Config

from orders_app.config import Defaults, load_config
from orders_app.extensions import db

from support.client import bearer, claims_of, forge_token, login, register
from support.settings import PASSWORD, TEST_SECRET, make_app

SERVICE_VARIABLES = [
    "DATABASE_URL",
    "REDIS_URL",
    "RABBITMQ_URL",
    "JWT_SECRET_KEY",
    "CORS_ORIGINS",
    "PROCESSING_DELAY_SECONDS",
]
STRONG_SECRET = "Zp3xQ9-vLk2Wm7Rt5Yb8Nc4Hd6Jf1Gs0"


@pytest.fixture
def environ(monkeypatch):
    """A private copy of the environment with none of the service's variables set."""
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")})
    for name in SERVICE_VARIABLES:
        os.environ.pop(name, None)
    return os.environ


def loaded(overrides=None):
    config = Config(root_path=".")
    load_config(config, {"TESTING": True, "JWT_SECRET_KEY": TEST_SECRET, **(overrides or {})})
    return config


def test_defaults_work_locally(environ):
    config = loaded()
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://postgres@127.0.0.1:5432/orders"
    assert config["REDIS_URL"] == "redis://127.0.0.1:6379/0"
    assert config["RABBITMQ_URL"] == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert config["PROCESSING_DELAY_SECONDS"] == 2.0
    assert config["CORS_ORIGINS"] == []
    assert config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(minutes=15)
    assert config["JWT_REFRESH_TOKEN_EXPIRES"] == timedelta(days=30)
    assert config["MAX_CONTENT_LENGTH"] == 64 * 1024


def test_plain_variables_configure_the_service(environ):
    environ.update(
        DATABASE_URL="postgresql://app:pw@db:5432/shop",
        REDIS_URL="redis://cache:6379/3",
        RABBITMQ_URL="amqp://u:p@mq:5672/orders",
        CORS_ORIGINS="https://shop.example.com, http://localhost:3000",
        PROCESSING_DELAY_SECONDS="0.5",
    )
    config = loaded()
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg2://app:pw@db:5432/shop"
    assert config["REDIS_URL"] == "redis://cache:6379/3"
    assert config["RABBITMQ_URL"] == "amqp://u:p@mq:5672/orders"
    assert config["CORS_ORIGINS"] == ["https://shop.example.com", "http://localhost:3000"]
    assert config["PROCESSING_DELAY_SECONDS"] == 0.5


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u@h/d", "postgresql+psycopg2://u@h/d"),
        ("postgresql+psycopg2://u@h/d", "postgresql+psycopg2://u@h/d"),
    ],
)
def test_database_urls_mean_psycopg2(environ, url, expected):
    environ["DATABASE_URL"] = url
    assert loaded()["SQLALCHEMY_DATABASE_URI"] == expected


def test_any_other_setting_comes_from_flask_prefixed_variables(environ):
    environ.update(
        FLASK_JWT_ACCESS_TOKEN_EXPIRES="900",
        FLASK_LOG_LEVEL="DEBUG",
        FLASK_SQLALCHEMY_ENGINE_OPTIONS__pool_size="3",
    )
    config = loaded()
    assert config["JWT_ACCESS_TOKEN_EXPIRES"] == timedelta(seconds=900)
    assert config["LOG_LEVEL"] == "DEBUG"
    assert config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 3
    assert config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_pre_ping"] is True


def test_a_nested_setting_changes_one_app_and_not_the_defaults(environ):
    environ["FLASK_SQLALCHEMY_ENGINE_OPTIONS__pool_size"] = "3"
    first = make_app()
    del environ["FLASK_SQLALCHEMY_ENGINE_OPTIONS__pool_size"]
    second = make_app()
    assert first.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"] == 3
    assert (
        second.config["SQLALCHEMY_ENGINE_OPTIONS"]["pool_size"]
        == Defaults.SQLALCHEMY_ENGINE_OPTIONS["pool_size"]
    )
    assert Defaults.SQLALCHEMY_ENGINE_OPTIONS["pool_size"] != 3
    for app, size in ((first, 3), (second, Defaults.SQLALCHEMY_ENGINE_OPTIONS["pool_size"])):
        with app.app_context():
            assert db.engine.pool.size() == size


def test_dotenv_is_honoured_and_the_environment_wins(environ, tmp_path, monkeypatch):
    environ.pop("PYTHON_DOTENV_DISABLED", None)
    (tmp_path / ".env").write_text(
        "REDIS_URL=redis://from-dotenv:6379/1\nRABBITMQ_URL=amqp://from-dotenv//\n"
    )
    monkeypatch.chdir(tmp_path)
    environ["RABBITMQ_URL"] = "amqp://from-environment//"
    config = loaded()
    assert config["REDIS_URL"] == "redis://from-dotenv:6379/1"
    assert config["RABBITMQ_URL"] == "amqp://from-environment//"


def test_explicit_overrides_win_over_the_environment(environ):
    environ["REDIS_URL"] = "redis://from-environment:6379/0"
    assert loaded({"REDIS_URL": "redis://override:6379/0"})["REDIS_URL"] == "redis://override:6379/0"


WEAK_SECRETS = [None, "", "change-me", "CHANGEME", "too-short-secret", "a" * 32, "ab" * 32]


@pytest.mark.parametrize("secret", WEAK_SECRETS)
def test_production_refuses_a_missing_example_short_or_low_entropy_secret(environ, secret):
    if secret is not None:
        environ["JWT_SECRET_KEY"] = secret
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY") as refused:
        load_config(Config(root_path="."))
    assert "FLASK_DEBUG" not in str(refused.value)  # no hint to switch the check off


@pytest.mark.parametrize("secret", WEAK_SECRETS)
def test_testing_mode_does_not_skip_the_secret_check(environ, secret):
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY"):
        load_config(Config(root_path="."), {"TESTING": True, "JWT_SECRET_KEY": secret})


def test_production_starts_with_a_strong_secret(environ):
    environ["JWT_SECRET_KEY"] = STRONG_SECRET
    config = Config(root_path=".")
    load_config(config)
    assert config["JWT_SECRET_KEY"] == STRONG_SECRET
    assert not config.get("TESTING") and not config.get("DEBUG")


@pytest.mark.parametrize("secret", [None, "change-me"])
def test_debug_mode_uses_a_random_secret_per_run_instead_of_a_weak_one(environ, caplog, secret):
    environ["FLASK_DEBUG"] = "1"
    if secret is not None:
        environ["JWT_SECRET_KEY"] = secret
    first, second = Config(root_path="."), Config(root_path=".")
    load_config(first)
    load_config(second)
    assert first["JWT_SECRET_KEY"] != second["JWT_SECRET_KEY"]
    assert len(first["JWT_SECRET_KEY"]) >= 32 and first["JWT_SECRET_KEY"] != secret
    assert "random secret for this run" in caplog.text


def test_debug_mode_keeps_a_strong_secret(environ):
    environ.update(FLASK_DEBUG="1", JWT_SECRET_KEY=STRONG_SECRET)
    config = Config(root_path=".")
    load_config(config)
    assert config["JWT_SECRET_KEY"] == STRONG_SECRET


@pytest.mark.parametrize(
    "variable, value",
    [
        ("DATABASE_URL", "postgresql://orders:orders@postgres:5432/orders"),
        ("REDIS_URL", "redis://:change-me@redis:6379/0"),
        ("RABBITMQ_URL", "amqp://orders:orders@rabbitmq:5672/%2F"),
        ("RQ_DASHBOARD_PASSWORD", "change-me"),
    ],
)
def test_production_refuses_the_example_passwords(environ, variable, value):
    environ.update({"JWT_SECRET_KEY": STRONG_SECRET, variable: value})
    with pytest.raises(RuntimeError, match=f"{variable} use an example password"):
        load_config(Config(root_path="."))
    environ["FLASK_DEBUG"] = "1"  # development may use them
    load_config(Config(root_path="."))


def test_production_accepts_real_passwords_and_the_local_defaults(environ):
    environ.update(
        JWT_SECRET_KEY=STRONG_SECRET,
        REDIS_URL="redis://:9f2c4e1a7b@redis:6379/0",
        RABBITMQ_URL="amqp://guest:guest@127.0.0.1:5672/%2F",
        RQ_DASHBOARD_PASSWORD="0c3d8e2b5f",
    )
    load_config(Config(root_path="."))


@pytest.mark.filterwarnings("ignore:The HMAC key is")  # short on purpose: the attacker's key
def test_a_token_forged_with_the_example_secret_is_refused_in_debug_mode(database):
    app = make_app(TESTING=False, DEBUG=True, JWT_SECRET_KEY="change-me")
    client = app.test_client()
    register(client, "victim@example.com")
    now = int(time.time())
    forged = forge_token(
        {
            "sub": "1",
            "is_admin": True,
            "type": "access",
            "jti": "x",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        },
        key="change-me",
    )
    response = client.get("/orders/user/1/", headers=bearer(forged))
    assert response.status_code == 401


def test_rs256_when_a_key_pair_is_configured(database):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    app = make_app(JWT_PRIVATE_KEY=private_pem, JWT_PUBLIC_KEY=public_pem)
    client = app.test_client()
    register(client, "rsa@example.com")
    tokens = login(client, "rsa@example.com", PASSWORD)
    header = jwt.get_unverified_header(tokens["access_token"])
    assert header["alg"] == "RS256"
    assert claims_of(tokens["access_token"])["sub"]
    assert client.get("/users/me", headers=bearer(tokens["access_token"])).status_code == 200
