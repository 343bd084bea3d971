"""The API, auth: registration, tokens, refresh, logout, the current user, token failures."""

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from flask_jwt_extended import create_refresh_token, decode_token
from redis import Redis
from sqlalchemy import delete, select

from orders_app.extensions import db
from orders_app.models import User

from support.client import bearer, claims_of, forge_token, login, register
from support.network import closed_port_url
from support.polling import wait_for
from support.settings import PASSWORD, TEST_REDIS_URL, make_app


def assert_error(response, code):
    assert response.status_code == code, response.json
    assert response.json["code"] == code
    assert set(response.json) <= {"code", "status", "message", "errors"}
    assert response.json["message"]


def assert_unauthorized(response):
    assert_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"


# --- registration ---------------------------------------------------------------------------


def test_register_returns_the_user_without_the_password(client):
    response = client.post("/register/", json={"email": "bob@example.com", "password": PASSWORD})
    assert response.status_code == 201
    assert set(response.json) == {"id", "email", "created_at"}
    assert response.json["email"] == "bob@example.com"
    assert PASSWORD not in response.get_data(as_text=True)


def test_register_stores_the_email_lower_case_and_an_argon2id_hash(app, client):
    register(client, "Bob.Smith@Example.COM")
    with app.app_context():
        user = db.session.scalar(select(User))
    assert user.email == "bob.smith@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert PasswordHasher().verify(user.password_hash, PASSWORD)


def test_production_hashing_uses_argon2id_defaults_and_upgrades_cheaper_hashes(app, client):
    register(client, "cheap@example.com")  # hashed with the tests' cheap parameters
    production = make_app(PASSWORD_HASH_TIME_COST=3, PASSWORD_HASH_MEMORY_COST=65536)
    login(production.test_client(), "cheap@example.com")
    with app.app_context():
        user = db.session.scalar(select(User))
    assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PasswordHasher().verify(user.password_hash, PASSWORD)


def test_an_email_taken_in_another_case_is_a_conflict(client):
    register(client, "carol@example.com")
    response = client.post("/register/", json={"email": "CAROL@example.com", "password": PASSWORD})
    assert_error(response, 409)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"email": "not-an-email", "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": "short12"}, "password"),
        ({"email": "a@example.com", "password": "x" * 129}, "password"),
        ({"email": "a@example.com"}, "password"),
        ({"password": PASSWORD}, "email"),
        ({"email": 42, "password": PASSWORD}, "email"),
        ({"email": "a@example.com", "password": 12345678}, "password"),
        ({"email": "a@example.com", "password": PASSWORD, "is_admin": True}, "is_admin"),
    ],
)
def test_invalid_registrations_are_422_with_the_field_named(client, body, field):
    response = client.post("/register/", json=body)
    assert_error(response, 422)
    assert field in response.json["errors"]["json"]


LONG_PASSWORD = ("Ocean tiger 42 violin " * 6)[:128]


def password_errors(client, password, email="a@example.com"):
    response = client.post("/register/", json={"email": email, "password": password})
    assert_error(response, 422)
    return response.json["errors"]["json"]["password"]


def test_password_length_limits_are_inclusive(client):
    assert password_errors(client, "Tq7#vZp") == ["Length must be between 8 and 128."]
    assert password_errors(client, LONG_PASSWORD + "x") == ["Length must be between 8 and 128."]
    register(client, "long@example.com", password=LONG_PASSWORD)  # zxcvbn itself refuses over 72


def test_eight_characters_pass_the_length_rule_but_zxcvbn_rates_none_strong_enough(client):
    [problem] = password_errors(client, "Tq7#vZp!")
    assert problem.startswith("Too easy to guess.")


@pytest.mark.parametrize(
    "password, reason",
    [
        ("password123", "This is a very common password."),
        ("qwertyuiopasdf", "This is similar to a commonly used password."),
        ("aaaaaaaaaaaaaaaa", 'Repeats like "aaa" are easy to guess.'),
        ("carol@example.com", ""),  # the email itself
        ("x" * 40 + "Tq7#vZp!kL2@", 'Repeats like "aaa" are easy to guess.'),  # judged on its first 40
    ],
)
def test_guessable_passwords_are_422_saying_why(client, password, reason):
    [problem] = password_errors(client, password, email="carol@example.com")
    assert problem.startswith("Too easy to guess.")
    assert reason in problem


# --- token ----------------------------------------------------------------------------------


def test_token_from_a_form_is_an_oauth2_bearer_token_pair(app, client):
    user = register(client, "dave@example.com")
    response = client.post(
        "/token", data={"grant_type": "password", "username": "dave@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200
    assert set(response.json) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert response.json["token_type"] == "bearer"
    assert response.json["expires_in"] == 15 * 60
    access, refresh = claims_of(response.json["access_token"]), claims_of(response.json["refresh_token"])
    assert access["sub"] == str(user["id"]) and access["type"] == "access"
    assert access["exp"] - access["iat"] == 15 * 60
    assert refresh["type"] == "refresh" and refresh["exp"] - refresh["iat"] == 30 * 24 * 3600


def test_token_accepts_json_and_any_case_of_the_email(client):
    register(client, "erin@example.com")
    response = client.post("/token", json={"username": "ERIN@Example.com", "password": PASSWORD})
    assert response.status_code == 200
    assert response.json["access_token"]


@pytest.mark.parametrize(
    "username, password", [("frank@example.com", "wrong password"), ("nobody@example.com", PASSWORD)]
)
def test_wrong_credentials_are_401_with_a_bearer_challenge(client, username, password):
    register(client, "frank@example.com")
    assert_unauthorized(client.post("/token", data={"username": username, "password": password}))


@pytest.mark.parametrize(
    "form",
    [
        {"username": "frank@example.com"},
        {"password": PASSWORD},
        {"grant_type": "client_credentials", "username": "frank@example.com", "password": PASSWORD},
    ],
)
def test_incomplete_token_requests_are_422(client, form):
    assert_error(client.post("/token", data=form), 422)


def test_access_token_lifetime_comes_from_flask_prefixed_setting(database):
    app = make_app(JWT_ACCESS_TOKEN_EXPIRES=60)
    client = app.test_client()
    register(client, "short@example.com")
    tokens = login(client, "short@example.com")
    assert tokens["expires_in"] == 60
    claims = claims_of(tokens["access_token"])
    assert claims["exp"] - claims["iat"] == 60


# --- refresh, logout, /users/me -------------------------------------------------------------


def refresh(client, refresh_token):
    return client.post("/token/refresh", headers=bearer(refresh_token))


def test_refresh_gives_a_new_working_token_pair(client, alice):
    response = refresh(client, alice["tokens"]["refresh_token"])
    assert response.status_code == 200
    assert set(response.json) == {"access_token", "token_type", "expires_in", "refresh_token"}
    new_token = response.json["access_token"]
    assert new_token != alice["tokens"]["access_token"]
    assert client.get("/users/me", headers=bearer(new_token)).json["email"] == "alice@example.com"
    assert refresh(client, response.json["refresh_token"]).status_code == 200


def test_a_refresh_token_works_once(client, alice):
    assert refresh(client, alice["tokens"]["refresh_token"]).status_code == 200
    assert_unauthorized(refresh(client, alice["tokens"]["refresh_token"]))


def test_replaying_a_used_refresh_token_revokes_its_whole_family(client, alice):
    stolen = alice["tokens"]["refresh_token"]
    rotated = refresh(client, stolen).json["refresh_token"]
    other_login = login(client, "alice@example.com")
    assert_unauthorized(refresh(client, stolen))  # the replay...
    assert_unauthorized(refresh(client, rotated))  # ...ends the session it was stolen from
    assert refresh(client, other_login["refresh_token"]).status_code == 200  # not other sessions


def test_of_two_refreshes_racing_with_one_token_exactly_one_wins_and_the_family_is_revoked(app, alice):
    start = threading.Barrier(2)

    def race(_):
        client = app.test_client()
        start.wait()
        return refresh(client, alice["tokens"]["refresh_token"])

    with ThreadPoolExecutor(2) as pool:
        answers = sorted(pool.map(race, range(2)), key=lambda answer: answer.status_code)
    assert [answer.status_code for answer in answers] == [200, 401]
    assert_unauthorized(refresh(app.test_client(), answers[0].json["refresh_token"]))  # the winner's too


def test_rotated_refresh_tokens_keep_their_family_and_its_revocation_lives_as_long_as_they_can(
    app, client, alice
):
    first = alice["tokens"]["refresh_token"]
    second = refresh(client, first).json["refresh_token"]
    assert claims_of(second)["fam"] == claims_of(first)["fam"]
    assert claims_of(login(client, "alice@example.com")["refresh_token"])["fam"] != claims_of(first)["fam"]
    refresh(client, first)  # replayed
    ttl = app.extensions["cache_redis"].ttl(f"jwt:revoked-family:{claims_of(first)['fam']}")
    assert 30 * 24 * 3600 - 10 <= ttl <= 30 * 24 * 3600


def refresh_token_of_a_login(app, user_id, days_ago):
    with app.app_context():
        login_time = int(time.time() - days_ago * 24 * 3600)
        return create_refresh_token(str(user_id), additional_claims={"fam": "f1", "auth_time": login_time})


def test_a_login_rotates_its_refresh_tokens_for_refresh_family_max_days_at_most(database, alice):
    app = make_app(JWT_REFRESH_FAMILY_MAX_DAYS=7)
    client = app.test_client()
    young = refresh_token_of_a_login(app, alice["user"]["id"], days_ago=6.9)
    rotated = refresh(client, young)
    assert rotated.status_code == 200
    assert claims_of(rotated.json["refresh_token"])["auth_time"] == claims_of(young)["auth_time"]
    old = refresh(client, refresh_token_of_a_login(app, alice["user"]["id"], days_ago=7.1))
    assert_unauthorized(old)
    assert old.json["message"] == "Session expired: log in again"


def test_a_login_starts_its_family_now(alice):
    assert abs(claims_of(alice["tokens"]["refresh_token"])["auth_time"] - time.time()) < 60


def test_refresh_while_redis_is_down_is_503(database, alice):
    client = make_app(REDIS_URL=closed_port_url("redis", "/0")).test_client()
    assert_error(refresh(client, alice["tokens"]["refresh_token"]), 503)


def test_token_answers_are_never_stored_errors_included(database, alice):
    """RFC 6749 5.1: every answer of /token and /token/refresh, whatever its status."""
    client = make_app(RATELIMIT_TOKEN="3/minute").test_client()
    stolen = alice["tokens"]["refresh_token"]
    answers = {
        200: client.post("/token", data={"username": "alice@example.com", "password": PASSWORD}),
        401: client.post("/token", data={"username": "alice@example.com", "password": "wrong-pass"}),
        422: client.post("/token", data={"username": "alice@example.com"}),
        429: client.post("/token", data={"username": "alice@example.com", "password": PASSWORD}),
        "refresh 200": refresh(client, stolen),
        "refresh 401": refresh(client, stolen),
        "refresh 503": refresh(make_app(REDIS_URL=closed_port_url("redis", "/0")).test_client(), stolen),
    }
    assert [answer.status_code for answer in answers.values()] == [200, 401, 422, 429, 200, 401, 503]
    for answer in answers.values():
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.headers["Pragma"] == "no-cache"


def test_users_me_returns_the_caller(client, alice):
    response = client.get("/users/me", headers=alice["headers"])
    assert response.status_code == 200
    assert response.json == alice["user"]


def test_logout_revokes_exactly_that_access_token(app, client, alice):
    other_session = login(client, "alice@example.com")
    response = client.post("/logout", headers=alice["headers"])
    assert response.status_code == 204
    assert_unauthorized(client.get("/users/me", headers=alice["headers"]))
    assert client.get("/users/me", headers=bearer(other_session["access_token"])).status_code == 200


@pytest.mark.parametrize("encoding", ["json", "data"])
def test_logout_with_the_refresh_token_revokes_it_too(client, alice, encoding):
    tokens = alice["tokens"]
    response = client.post(
        "/logout", headers=alice["headers"], **{encoding: {"refresh_token": tokens["refresh_token"]}}
    )
    assert response.status_code == 204
    assert_unauthorized(refresh(client, tokens["refresh_token"]))


def test_logout_revokes_a_refresh_token_issued_before_families_existed(client, alice):
    claims = claims_of(alice["tokens"]["refresh_token"])
    claims.pop("fam")
    old_token = forge_token(claims)  # as the previous release signed it, with the same secret
    response = client.post("/logout", headers=alice["headers"], json={"refresh_token": old_token})
    assert response.status_code == 204
    assert_unauthorized(refresh(client, old_token))


def test_logout_without_the_refresh_token_leaves_it_valid(client, alice):
    assert client.post("/logout", headers=alice["headers"]).status_code == 204
    assert refresh(client, alice["tokens"]["refresh_token"]).status_code == 200


def test_logout_refuses_what_is_not_the_callers_refresh_token(client, alice, bob):
    for wrong in [bob["tokens"]["refresh_token"], alice["tokens"]["access_token"], "not.a.token", ""]:
        response = client.post("/logout", headers=alice["headers"], json={"refresh_token": wrong})
        assert_error(response, 422)
        assert "refresh_token" in response.json["errors"]["json_or_form"]
    assert refresh(client, bob["tokens"]["refresh_token"]).status_code == 200


def test_the_optional_logout_body_is_documented(client):
    document = client.get("/openapi.json").json
    body = document["paths"]["/logout"]["post"]["requestBody"]
    assert body.get("required", False) is False
    assert "refresh_token" in document["components"]["schemas"]["Logout"]["properties"]


def test_the_blocklist_entry_lives_until_the_token_expires(app, client, alice):
    client.post("/logout", headers=alice["headers"])
    with app.app_context():
        jti = decode_token(alice["tokens"]["access_token"])["jti"]
        ttl = app.extensions["cache_redis"].ttl(f"jwt:revoked:{jti}")
    assert 15 * 60 - 10 <= ttl <= 15 * 60


def test_a_revoked_token_cannot_log_out_again(client, alice):
    client.post("/logout", headers=alice["headers"])
    assert_unauthorized(client.post("/logout", headers=alice["headers"]))


def test_a_deleted_user_cannot_use_or_refresh_tokens(app, client, alice):
    with app.app_context():
        db.session.delete(db.session.get(User, alice["user"]["id"]))
        db.session.commit()
    assert_unauthorized(client.get("/users/me", headers=alice["headers"]))
    assert_unauthorized(client.post("/token/refresh", headers=bearer(alice["tokens"]["refresh_token"])))


def remembered_then_deleted(app, email):
    """A user whose token ``app``'s process has seen (so it remembers the user exists), then
    deleted by hand with SQL (so its version is not bumped, as the ORM would): ``(client, user, headers)``."""
    client = app.test_client()
    user = register(client, email)
    headers = bearer(login(client, email)["access_token"])
    assert client.get("/users/me", headers=headers).status_code == 200  # remembered from now on
    with app.app_context():
        db.session.execute(delete(User).where(User.id == user["id"]))
        db.session.commit()
    return client, user, headers


def place_tea(client, headers):
    body = {"items": [{"name": "Tea", "quantity": 1, "price": 1}]}
    return client.post("/orders/", json=body, headers=headers)


def test_a_user_deleted_while_remembered_cannot_order_and_soon_cannot_read(database):
    """A process remembers for USER_EXISTS_CACHE_SECONDS that a user exists; an order placed
    meanwhile with a deleted user's token is still a 401 (its foreign key refuses it), and once
    the process forgets, every route is."""
    app = make_app(USER_EXISTS_CACHE_SECONDS=1)
    client, user, headers = remembered_then_deleted(app, "carol@example.com")
    response = place_tea(client, headers)
    assert_unauthorized(response)
    assert response.json["message"] == "The token's user no longer exists"
    wait_for(
        lambda: client.get(f"/orders/user/{user['id']}/", headers=headers).status_code == 401,
        timeout=5,
        message="the process to forget the user",
    )
    with app.app_context():
        db.engine.dispose()


def test_a_deleted_users_token_gets_one_answer_whichever_check_finds_the_user_gone(database):
    """The token's user lookup, the current user's read and an order's foreign key all answer alike."""
    app = make_app(USER_EXISTS_CACHE_SECONDS=60)
    client, user, headers = remembered_then_deleted(app, "dave@example.com")
    answers = [
        make_app().test_client().get("/users/me", headers=headers),  # a process that never saw the user
        client.get("/users/me", headers=headers),
        place_tea(client, headers),
    ]
    for response in answers:
        assert_unauthorized(response)
        assert response.json == {
            "code": 401,
            "status": "Unauthorized",
            "message": "The token's user no longer exists",
        }
    with app.app_context():
        db.engine.dispose()


# --- every token failure is a 401 in the error format ---------------------------------------


def test_missing_token_is_401(client):
    assert_unauthorized(client.get("/users/me"))


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer not.a.jwt", "Bearer abc", "Basic dXNlcjpwYXNz", "Bearer a.b.c.d", "token"],
)
def test_malformed_authorization_is_401(client, authorization):
    assert_unauthorized(client.get("/users/me", headers={"Authorization": authorization}))


def test_expired_token_is_401(client, alice):
    payload = claims_of(alice["tokens"]["access_token"]) | {"exp": int(time.time()) - 5}
    assert_unauthorized(client.get("/users/me", headers=bearer(forge_token(payload))))


def test_tampered_token_is_401(client, alice):
    header, payload, signature = alice["tokens"]["access_token"].split(".")
    forged = forge_token(claims_of(alice["tokens"]["access_token"]) | {"sub": "2"}).split(".")[1]
    assert_unauthorized(client.get("/users/me", headers=bearer(f"{header}.{forged}.{signature}")))


def test_token_signed_with_another_secret_is_401(client, alice):
    payload = claims_of(alice["tokens"]["access_token"])
    token = forge_token(payload, key="another-secret-that-is-also-long-enough-000000")
    assert_unauthorized(client.get("/users/me", headers=bearer(token)))


def test_unsigned_alg_none_token_is_401(client, alice):
    token = forge_token(claims_of(alice["tokens"]["access_token"]), algorithm="none")
    assert_unauthorized(client.get("/users/me", headers=bearer(token)))


def test_refresh_token_used_as_access_token_is_401(client, alice):
    assert_unauthorized(client.get("/users/me", headers=bearer(alice["tokens"]["refresh_token"])))


def test_access_token_used_to_refresh_is_401(client, alice):
    assert_unauthorized(client.post("/token/refresh", headers=alice["headers"]))


# --- Redis down: the blocklist fails open, logout says it cannot revoke ---------------------


@pytest.fixture
def client_without_redis(database, alice):
    return make_app(REDIS_URL=closed_port_url("redis", "/0")).test_client()


def test_tokens_are_accepted_while_the_blocklist_is_unreachable(client_without_redis, alice, caplog):
    response = client_without_redis.get("/users/me", headers=alice["headers"])
    assert response.status_code == 200
    assert "blocklist unavailable" in caplog.text


def test_logout_while_redis_is_down_is_503_not_a_false_success(client_without_redis, alice):
    assert_error(client_without_redis.post("/logout", headers=alice["headers"]), 503)


@pytest.fixture
def redis_refusing_writes():
    """A ``REDIS_URL`` of the test Redis db that answers reads and refuses writes, as a replica
    does after a failover: a user of Redis's ACLs that may run no write command."""
    admin = Redis.from_url(TEST_REDIS_URL)
    name, password = f"reader-{uuid.uuid4().hex}", uuid.uuid4().hex
    admin.acl_setuser(
        name, enabled=True, passwords=[f"+{password}"], keys=["~*"], categories=["+@all", "-@write"]
    )
    url = urlsplit(TEST_REDIS_URL)
    yield url._replace(netloc=f"{name}:{password}@{url.hostname}:{url.port}").geturl()
    admin.acl_deluser(name)


def test_a_replayed_refresh_token_is_refused_even_when_its_family_cannot_be_revoked(
    client, alice, redis_refusing_writes, caplog
):
    stolen = alice["tokens"]["refresh_token"]
    assert refresh(client, stolen).status_code == 200
    read_only = make_app(REDIS_URL=redis_refusing_writes, RATELIMIT_ENABLED=False).test_client()
    assert_unauthorized(refresh(read_only, stolen))
    assert "its family could not be revoked" in caplog.text
