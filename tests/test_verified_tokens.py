"""Each process remembers the tokens it verified (auth/jwt_manager.py): a token is verified once,
and what must be checked on every request still is (expiry, blocklist, key of the app)."""

import time

import flask_jwt_extended

from support.client import bearer
from support.polling import wait_for
from support.settings import make_app


def count_verifications(monkeypatch):
    calls = []
    verify = flask_jwt_extended.JWTManager._decode_jwt_from_config

    def counted(self, *args, **kwargs):
        calls.append(args[0])
        return verify(self, *args, **kwargs)

    monkeypatch.setattr(flask_jwt_extended.JWTManager, "_decode_jwt_from_config", counted)
    return calls


def test_a_token_is_verified_once_per_process(client, alice, monkeypatch):
    verifications = count_verifications(monkeypatch)
    for _ in range(3):
        assert client.get("/users/me", headers=alice["headers"]).status_code == 200
    assert verifications == [alice["tokens"]["access_token"]]


def test_a_remembered_token_still_expires(database, monkeypatch):
    client = make_app(JWT_ACCESS_TOKEN_EXPIRES=5).test_client()
    client.post("/register", json={"email": "brief@example.com", "password": "correct horse battery"})
    token = client.post(
        "/token", data={"username": "brief@example.com", "password": "correct horse battery"}
    ).json["access_token"]
    assert client.get("/users/me", headers=bearer(token)).status_code == 200
    started = time.monotonic()
    wait_for(lambda: client.get("/users/me", headers=bearer(token)).status_code == 401, timeout=30)
    assert time.monotonic() - started > 0.5  # refused when it expired, not at once
    assert client.get("/users/me", headers=bearer(token)).json["message"] == "Token has expired"


def test_a_remembered_token_is_refused_once_revoked(client, alice):
    assert client.get("/users/me", headers=alice["headers"]).status_code == 200
    assert client.post("/logout", headers=alice["headers"]).status_code == 204
    assert client.get("/users/me", headers=alice["headers"]).status_code == 401


def test_an_app_with_another_key_does_not_take_a_token_another_app_verified(client, alice, database):
    assert client.get("/users/me", headers=alice["headers"]).status_code == 200
    other = make_app(JWT_SECRET_KEY="another-secret-that-is-long-enough-for-hs256-9876").test_client()
    assert other.get("/users/me", headers=alice["headers"]).status_code == 401
