"""Flask CLI: ``flask create-admin``, ``flask set-admin`` and ``flask prestart``."""

import pytest
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.engine import make_url

from orders_app.auth.passwords import verify_password
from orders_app.extensions import db
from orders_app.models import User

from support.client import bearer, claims_of, login, register
from support.network import closed_port_url
from support.settings import PASSWORD, TEST_DATABASE_URL, TEST_REDIS_URL, make_app


def user_by_email(app, email):
    with app.app_context():
        return db.session.scalar(select(User).where(User.email == email))


def test_create_admin_creates_an_admin_whose_tokens_say_so(app, client):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "Root@Example.com", "--password-stdin"], input=f"{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    assert user_by_email(app, "root@example.com").is_admin
    assert claims_of(login(client, "root@example.com")["access_token"])["is_admin"] is True


def test_create_admin_prompts_for_the_password_of_a_new_user(app):
    result = app.test_cli_runner().invoke(
        args=["create-admin", "prompted@example.com"], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert result.exit_code == 0, result.output
    with app.app_context():
        assert verify_password(user_by_email(app, "prompted@example.com").password_hash, PASSWORD)


def test_create_admin_promotes_an_existing_user_and_keeps_the_password(app, client):
    register(client, "promote@example.com")
    result = app.test_cli_runner().invoke(args=["create-admin", "promote@example.com"])
    assert result.exit_code == 0, result.output
    user = user_by_email(app, "promote@example.com")
    with app.app_context():
        assert user.is_admin and verify_password(user.password_hash, PASSWORD)


def test_registered_users_are_not_admins(app, client):
    register(client, "plain@example.com")
    assert not user_by_email(app, "plain@example.com").is_admin
    assert claims_of(login(client, "plain@example.com")["access_token"])["is_admin"] is False


def test_create_admin_takes_no_password_argument(app):
    result = app.test_cli_runner().invoke(args=["create-admin", "x@example.com", "--password", PASSWORD])
    assert result.exit_code == 2
    assert "No such option" in result.output
    with app.app_context():
        assert db.session.scalar(select(User)) is None


@pytest.mark.parametrize(
    "email, password, problem",
    [
        ("not-an-email", PASSWORD, "Not a valid email address."),
        ("x@example.com", "short", "Length must be between 8 and 128."),
        ("x@example.com", "password123", "Too easy to guess. This is a very common password."),
    ],
)
def test_create_admin_rejects_bad_input(app, email, password, problem):
    result = app.test_cli_runner().invoke(
        args=["create-admin", email, "--password-stdin"], input=f"{password}\n"
    )
    assert result.exit_code == 2
    assert "Invalid value" in result.output
    assert problem in result.output
    with app.app_context():
        assert db.session.scalar(select(User)) is None


@pytest.fixture
def scratch_database_url():
    url = make_url(TEST_DATABASE_URL).set(database=make_url(TEST_DATABASE_URL).database + "_prestart")
    yield url
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def test_prestart_creates_a_missing_database_and_migrates_it(database, scratch_database_url):
    url = scratch_database_url.render_as_string(hide_password=False)
    app = make_app(SQLALCHEMY_DATABASE_URI=url)
    result = app.test_cli_runner().invoke(args=["prestart"])
    assert result.exit_code == 0, result.output
    engine = create_engine(url)
    assert "users" in inspect(engine).get_table_names()
    engine.dispose()
    again = app.test_cli_runner().invoke(args=["prestart"])  # idempotent
    assert again.exit_code == 0, again.output


def test_prestart_names_each_unreachable_service_and_how_to_start_it(database):
    app = make_app(
        SQLALCHEMY_DATABASE_URI=closed_port_url("postgresql+psycopg2", "/orders"),
        REDIS_URL=closed_port_url("redis", "/0"),
        RABBITMQ_URL=closed_port_url("amqp", "/%2F"),
    )
    result = app.test_cli_runner().invoke(args=["prestart"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for service, how in [
        ("PostgreSQL", "pg_ctlcluster"),
        ("Redis", "redis-server"),
        ("RabbitMQ", "rabbitmq-server"),
    ]:
        assert f"{service} is not reachable" in result.output
        assert how in result.output


def test_prestart_hides_passwords_in_its_messages(database):
    url = closed_port_url("amqp", "/%2F").replace("amqp://", "amqp://guest:s3cret@")
    app = make_app(RABBITMQ_URL=url)
    result = app.test_cli_runner().invoke(args=["prestart"])
    assert result.exit_code == 1
    assert "RabbitMQ is not reachable at amqp://guest:***@" in result.output
    assert "s3cret" not in result.output


@pytest.mark.parametrize("over", [True, False])
def test_prestart_warns_when_the_web_may_exceed_max_connections(app, monkeypatch, over):
    """A web worker may hold 10 connections (pool_size 5 + max_overflow 5, the defaults)."""
    with app.app_context():
        allowed = int(db.session.scalar(text("SHOW max_connections")))
        db.session.rollback()
    workers = allowed // 10 + 1 if over else allowed // 10
    monkeypatch.setenv("WEB_CONCURRENCY", str(workers))
    result = app.test_cli_runner().invoke(args=["prestart"])
    assert result.exit_code == 0, result.output
    warning = (
        f"Warning: the web may open {workers * 10} PostgreSQL connections ({workers} workers x "
        f"(pool_size 5 + max_overflow 5)), more than the server's max_connections ({allowed})"
    )
    assert (warning in result.stderr) is over


def other_users_orders(client, headers, owner_id):
    return client.get(f"/orders/user/{owner_id}/", headers=headers).status_code


def test_a_demoted_admin_loses_admin_rights_on_the_next_request(app, client, alice, admin):
    assert other_users_orders(client, admin["headers"], alice["user"]["id"]) == 200  # remembered as valid
    result = app.test_cli_runner().invoke(args=["set-admin", "Admin@example.com", "--revoke"])
    assert result.exit_code == 0, result.output
    assert "admin@example.com is no longer an admin" in result.output
    assert other_users_orders(client, admin["headers"], alice["user"]["id"]) == 401
    refreshed = client.post("/token/refresh", headers=bearer(admin["tokens"]["refresh_token"]))
    assert refreshed.status_code == 401
    again = login(client, "admin@example.com")
    assert claims_of(again["access_token"])["is_admin"] is False
    assert other_users_orders(client, bearer(again["access_token"]), alice["user"]["id"]) == 403


def test_a_role_changed_while_a_login_is_checked_is_in_its_token(app, client, admin):
    """``/token`` loads the user, then spends argon2's time on the password: a demotion committed
    meanwhile must be in the token, or its version bump must refuse the token."""
    from orders_app.auth import tokens

    with app.test_request_context():
        loaded = db.session.scalar(select(User).where(User.email == "admin@example.com"))
        assert loaded.is_admin
        db.session.expunge(loaded)  # as another request's session holds it
        result = app.test_cli_runner().invoke(args=["set-admin", "admin@example.com", "--revoke"])
        assert result.exit_code == 0, result.output
        issued = tokens.issue_tokens(loaded)  # the user as loaded before the demotion
    assert claims_of(issued["access_token"])["is_admin"] is False


def test_set_admin_grants_admin_rights_from_the_next_login(app, client, alice, bob):
    result = app.test_cli_runner().invoke(args=["set-admin", "bob@example.com"])
    assert result.exit_code == 0, result.output
    assert "bob@example.com is now an admin" in result.output
    assert client.get("/users/me", headers=bob["headers"]).status_code == 401  # the old token ends
    headers = bearer(login(client, "bob@example.com")["access_token"])
    assert other_users_orders(client, headers, alice["user"]["id"]) == 200
    assert client.get("/users/me", headers=alice["headers"]).status_code == 200  # others unaffected


def test_set_admin_needs_an_existing_user(app):
    result = app.test_cli_runner().invoke(args=["set-admin", "nobody@example.com"])
    assert result.exit_code == 1
    assert "No user nobody@example.com" in result.output


def test_set_admin_says_when_redis_could_not_end_the_tokens(app, alice, admin):
    without_redis = make_app(REDIS_URL=closed_port_url("redis", "/0"))
    result = without_redis.test_cli_runner().invoke(args=["set-admin", "admin@example.com", "--revoke"])
    assert result.exit_code == 1
    assert "role is changed, but Redis is unreachable" in result.output
    assert not user_by_email(app, "admin@example.com").is_admin
    with without_redis.app_context():
        db.engine.dispose()


def test_a_user_deleted_through_the_orm_loses_access_on_the_next_request(database):
    app = make_app(USER_EXISTS_CACHE_SECONDS=60)  # the process remembers the user a minute
    client = app.test_client()
    user = register(client, "erin@example.com")
    headers = bearer(login(client, "erin@example.com")["access_token"])
    assert client.get("/users/me", headers=headers).status_code == 200
    with app.app_context():
        db.session.delete(db.session.get(User, user["id"]))
        db.session.commit()
        db.engine.dispose()
    response = client.get(f"/orders/user/{user['id']}/", headers=headers)
    assert response.status_code == 401
    assert response.json["message"] == "Token has been revoked"


def test_a_token_issued_while_redis_was_down_ends_once_redis_is_back_if_the_role_changed(app, client, admin):
    """While Redis is down a login cannot read the user's version: its tokens say 0, which is
    refused once Redis is back if the role changed since (here: the admin was demoted before)."""
    app.test_cli_runner().invoke(args=["set-admin", "admin@example.com", "--revoke"])
    during_outage = make_app(REDIS_URL=closed_port_url("redis", "/0"), RATELIMIT_STORAGE_URI=TEST_REDIS_URL)
    tokens = login(during_outage.test_client(), "admin@example.com")
    assert claims_of(tokens["access_token"])["ver"] == 0
    assert client.get("/users/me", headers=bearer(tokens["access_token"])).status_code == 401
    with during_outage.app_context():
        db.engine.dispose()
