"""The API, protection: rate limits on Redis, per user or per client IP."""

import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import request
from redis import Redis

from orders_app.protection import never_raises

from support.client import bearer, login, register
from support.network import TcpProxy, closed_port_url
from support.polling import wait_for
from support.settings import PASSWORD, TEST_REDIS_URL, make_app

ITEMS = {"items": [{"name": "Tea", "quantity": 1, "price": 1}]}


def client_from(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def register_many(client, count, prefix="user"):
    return [
        client.post(
            "/register/", json={"email": f"{prefix}{n}@example.com", "password": PASSWORD}
        ).status_code
        for n in range(count)
    ]


def test_register_allows_5_a_minute_per_ip(app):
    assert register_many(client_from(app, "10.1.0.1"), 6) == [201] * 5 + [429]


def test_a_429_has_the_error_body_retry_after_and_rate_limit_headers(app):
    client = client_from(app, "10.1.0.2")
    register_many(client, 5)
    response = client.post("/register/", json={"email": "late@example.com", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json["code"] == 429
    assert response.json["status"] == "Too Many Requests"
    assert "5 per 1 minute" in response.json["message"]
    assert 0 < int(response.headers["Retry-After"]) <= 60
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "0"


def test_successful_responses_carry_the_rate_limit_headers(client):
    response = client.post("/register/", json={"email": "a@example.com", "password": PASSWORD})
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "4"


def test_anonymous_clients_on_different_ips_have_separate_budgets(app):
    assert register_many(client_from(app, "10.1.0.3"), 5, "a")[-1] == 201
    assert register_many(client_from(app, "10.1.0.4"), 1, "b") == [201]


def test_token_allows_10_a_minute(app):
    client = client_from(app, "10.1.0.5")
    register(client, "t@example.com")
    statuses = [
        client.post("/token", data={"username": "t@example.com", "password": "wrong-pass"}).status_code
        for _ in range(11)
    ]
    assert statuses == [401] * 10 + [429]


def wrong_logins(client, username, count, headers=None):
    return [
        client.post(
            "/token", data={"username": username, "password": "wrong-pass"}, headers=headers or {}
        ).status_code
        for _ in range(count)
    ]


def access_tokens_of_throwaway_accounts(client, count):
    emails = [f"throwaway{n}@example.com" for n in range(count)]
    for email in emails:
        register(client, email)
    return [bearer(login(client, email)["access_token"]) for email in emails]


def test_a_bearer_header_buys_no_fresh_budget_for_password_guesses(app):
    register(client_from(app, "10.1.1.0"), "target@example.com")
    headers = access_tokens_of_throwaway_accounts(client_from(app, "10.1.1.0"), 3)
    client = client_from(app, "10.1.1.1")
    statuses = [
        wrong_logins(client, "target@example.com", 1, headers[n % len(headers)])[0] for n in range(11)
    ]
    assert statuses == [401] * 10 + [429]


def test_a_bearer_header_buys_no_fresh_budget_for_registrations(app):
    client = client_from(app, "10.1.1.2")
    headers = access_tokens_of_throwaway_accounts(client, 1)  # 1 of the 5 registrations
    statuses = [
        client.post(
            "/register/", json={"email": f"more{n}@example.com", "password": PASSWORD}, headers=headers[0]
        ).status_code
        for n in range(5)
    ]
    assert statuses == [201] * 4 + [429]


def test_guesses_per_account_are_limited_whatever_the_address(database):
    app = make_app(RATELIMIT_TOKEN_PER_USERNAME="3/hour")
    register(client_from(app, "10.1.2.0"), "target@example.com")
    statuses = [
        wrong_logins(client_from(app, f"10.1.2.{n}"), username, 1)[0]
        for n, username in enumerate(["target@example.com", "TARGET@example.com", " target@example.com"], 1)
    ]
    assert statuses == [401] * 3
    late = client_from(app, "10.1.2.9").post(
        "/token", data={"username": "target@example.com", "password": PASSWORD}
    )
    assert late.status_code == 429
    assert "3 per 1 hour" in late.json["message"]
    register(client_from(app, "10.1.2.10"), "other@example.com")
    assert login(client_from(app, "10.1.2.11"), "other@example.com")  # another account is unaffected


def test_only_failed_logins_count_against_the_account(database):
    app = make_app(RATELIMIT_TOKEN_PER_USERNAME="2/hour")
    client = client_from(app, "10.1.3.1")
    register(client, "owner@example.com")
    assert wrong_logins(client, "owner@example.com", 1) == [401]
    for _ in range(3):
        login(client, "owner@example.com")
    assert wrong_logins(client, "owner@example.com", 2) == [401, 429]


@pytest.mark.parametrize("spelling", [" Bob@X.com ", "BOB@x.COM", "\tbob@x.com\n"])
def test_any_spelling_that_logs_in_to_an_account_spends_its_budget(database, spelling):
    """The per-account limit reads the username exactly as /token does."""
    app = make_app(RATELIMIT_TOKEN_PER_USERNAME="2/hour")
    client = client_from(app, "10.1.4.1")
    register(client, "bob@x.com")
    assert login(client, spelling)  # this spelling names the account...
    assert wrong_logins(client, spelling, 1) == [401]  # ...and spends its budget
    assert wrong_logins(client, "bob@x.com", 2) == [401, 429]


def rate_limit_keys():
    return Redis.from_url(TEST_REDIS_URL, decode_responses=True).keys("*ratelimit*")


def test_a_refresh_token_is_keyed_by_address_not_by_user(app):
    client = client_from(app, "10.1.4.1")
    register(client, "refresher@example.com")
    refresh = bearer(login(client, "refresher@example.com")["refresh_token"])
    assert client.get("/users/me", headers=refresh).status_code == 401
    assert not [key for key in rate_limit_keys() if "user:" in key]


def test_an_access_token_is_keyed_by_user(app):
    client = client_from(app, "10.1.4.2")
    register(client, "reader@example.com")
    client.get("/users/me", headers=bearer(login(client, "reader@example.com")["access_token"]))
    assert [key for key in rate_limit_keys() if "user:1/" in key]


def test_order_creation_allows_30_a_minute_per_user_and_users_do_not_share_it(app, client):
    register(client, "busy@example.com")
    register(client, "calm@example.com")
    busy = bearer(login(client, "busy@example.com")["access_token"])
    calm = bearer(login(client, "calm@example.com")["access_token"])
    statuses = [client.post("/orders/", json=ITEMS, headers=busy).status_code for _ in range(31)]
    assert statuses == [201] * 30 + [429]
    assert client.post("/orders/", json=ITEMS, headers=calm).status_code == 201  # same IP, another user


def test_the_overall_limit_is_100_a_minute_across_endpoints(app, client):
    register(client, "reader@example.com")
    headers = bearer(login(client, "reader@example.com")["access_token"])
    statuses = [client.get("/users/me", headers=headers).status_code for _ in range(100)]
    assert statuses == [200] * 100
    assert client.get("/orders/user/1/", headers=headers).status_code == 429  # another endpoint, same budget


def test_limits_reset_after_their_window(database):
    """Refused within the window, served again once it moved on (windows follow the clock: the
    first two registrations may fall into two of them, so the 429 is polled for too)."""
    client = client_from(make_app(RATELIMIT_REGISTER="2 per 3 seconds"), "10.1.0.6")
    prefixes = (f"w{n}-" for n in itertools.count())
    wait_for(lambda: register_many(client, 1, next(prefixes)) == [429], timeout=30, message="a 429")
    wait_for(lambda: register_many(client, 1, next(prefixes)) == [201], timeout=30, interval=0.5)


def test_limits_are_configurable(database):
    app = make_app(RATELIMIT_REGISTER="1/minute")
    assert register_many(client_from(app, "10.1.0.7"), 2) == [201, 429]


def test_limiting_can_be_switched_off(database):
    app = make_app(RATELIMIT_ENABLED=False)
    assert register_many(client_from(app, "10.1.0.8"), 7) == [201] * 7


def test_the_counters_live_in_redis(app):
    register_many(client_from(app, "10.1.0.9"), 1)
    keys = Redis.from_url(TEST_REDIS_URL, decode_responses=True).keys("*ratelimit*")
    assert any("ip:10.1.0.9" in key for key in keys)


def test_health_and_docs_are_not_limited(database):
    app = make_app(RATELIMIT_APPLICATION="2/minute")
    client = client_from(app, "10.1.0.10")
    assert {client.get(path).status_code for path in ["/health", "/docs", "/openapi.json"] * 3} == {200}


def test_when_the_limiters_redis_is_down_requests_are_served_and_limited_in_memory(database):
    app = make_app(
        RATELIMIT_STORAGE_URI=closed_port_url("redis", "/0"), RATELIMIT_IN_MEMORY_FALLBACK="3/minute"
    )
    client = client_from(app, "10.1.0.11")
    assert [client.get("/users/me").status_code for _ in range(4)] == [401] * 3 + [429]


def test_the_limiters_redis_being_down_is_logged_once_not_per_request(database, caplog):
    client = client_from(make_app(RATELIMIT_STORAGE_URI=closed_port_url("redis", "/0")), "10.1.0.14")
    assert [client.get("/users/me").status_code for _ in range(5)] == [401] * 5
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "flask-limiter" and r.levelname == "WARNING"
    ]
    assert warnings == ["Rate limit storage unreachable - falling back to in-memory storage"]


def test_the_memory_fallback_is_the_overall_limit_by_default(database):
    app = make_app(RATELIMIT_STORAGE_URI=closed_port_url("redis", "/0"))
    client = client_from(app, "10.1.0.13")
    assert [client.get("/users/me").status_code for _ in range(101)] == [401] * 100 + [429]


def test_after_a_redis_outage_a_new_app_counts_in_redis_again(database):
    make_app(RATELIMIT_STORAGE_URI=closed_port_url("redis", "/0")).test_client().get("/users/me")
    client_from(make_app(), "10.1.0.12").get("/users/me")
    keys = Redis.from_url(TEST_REDIS_URL, decode_responses=True).keys("*ratelimit*")
    assert any("ip:10.1.0.12" in key for key in keys)


@pytest.mark.parametrize("trusted, expected", [(0, "ip:127.0.0.1"), (1, "ip:203.0.113.9")])
def test_the_client_ip_comes_from_x_forwarded_for_only_behind_trusted_proxies(database, trusted, expected):
    app = make_app(TRUSTED_PROXIES=trusted)
    app.test_client().post(
        "/register/",
        json={"email": "p@example.com", "password": PASSWORD},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    keys = Redis.from_url(TEST_REDIS_URL, decode_responses=True).keys("*ratelimit*")
    assert any(expected in key for key in keys), keys


def test_trusted_proxies_are_trusted_for_the_address_only(database):
    app = make_app(TRUSTED_PROXIES=1)
    app.add_url_rule("/where", "where", lambda: {"host": request.host, "scheme": request.scheme})
    response = app.test_client().get(
        "/where", headers={"X-Forwarded-Host": "evil.example.net", "X-Forwarded-Proto": "https"}
    )
    assert response.json == {"host": "localhost", "scheme": "http"}


# A locked account stays locked: whatever a request holds, and while the limiter's Redis is down.

LOCKED = "locked@example.com"
HOSTILE_TOKEN_REQUESTS = {
    "JSON nested 5,000 deep": {"data": b"[" * 5000 + b"]" * 5000, "content_type": "application/json"},
    "a lone surrogate": {"data": b'{"username": "\\ud800"}', "content_type": "application/json"},
    "a body over MAX_CONTENT_LENGTH": {"data": {"username": LOCKED, "password": "x" * 70_000}},
    "invalid UTF-8": {"data": b'{"username": "\xff\xfe"}', "content_type": "application/json"},
    "a broken multipart form": {
        "data": b"--x\r\nnot a part",
        "content_type": "multipart/form-data; boundary=x",
    },
    "a forged bearer": {"data": {"username": LOCKED}, "headers": {"Authorization": "Bearer a.b.c"}},
}


def locked_account_app(**overrides):
    """An app whose per-account limit (3 an hour) LOCKED has spent."""
    app = make_app(RATELIMIT_TOKEN_PER_USERNAME="3/hour", **overrides)
    register(client_from(app, "10.3.0.1"), LOCKED)
    assert wrong_logins(client_from(app, "10.3.0.2"), LOCKED, 3) == [401] * 3
    return app


@pytest.mark.parametrize("hostile", HOSTILE_TOKEN_REQUESTS.values(), ids=HOSTILE_TOKEN_REQUESTS)
def test_no_request_switches_the_login_limits_off(database, hostile):
    """The issue's exploit: a request whose key function raised made flask-limiter count in memory
    (its storage "down"), without the per-account limit; a guess sent right after was verified."""
    app = locked_account_app()
    attacker = client_from(app, "10.3.0.3")
    guesses = []
    for _ in range(3):
        attacker.post("/token", **hostile)
        guesses += wrong_logins(attacker, LOCKED, 1)
    assert guesses == [429] * 3
    assert app.extensions["rate_limiter"]._storage_dead is False  # counting in Redis still


def test_a_key_function_that_raises_keys_the_request_by_its_fallback(app):
    @never_raises(fallback=lambda: "ip:fallback")
    def broken():
        raise RecursionError("maximum recursion depth exceeded")

    with app.test_request_context("/token", method="POST"):
        assert broken() == "ip:fallback"


def test_while_the_limiters_redis_is_down_logins_and_registrations_answer_503(database):
    """Fail closed: the in-memory fallback holds no per-account, /token or /register/ limit."""
    redis_proxy = TcpProxy(TEST_REDIS_URL).start()
    try:
        app = locked_account_app(RATELIMIT_STORAGE_URI=redis_proxy.url)
        redis_proxy.stop()  # the limiter's Redis goes away
        attacker = client_from(app, "10.3.0.4")
        guesses = [
            attacker.post("/token", data={"username": LOCKED, "password": f"guess{n}"}) for n in range(20)
        ]
        assert {guess.status_code for guess in guesses} == {503}
        assert all(2 <= int(guess.headers["Retry-After"]) <= 60 for guess in guesses)
        assert guesses[0].json["message"] == "Rate limits unavailable; retry shortly"
        signup = attacker.post("/register/", json={"email": "new@example.com", "password": PASSWORD})
        assert signup.status_code == 503
        assert attacker.get("/users/me").status_code == 401  # the rest is served (limited in memory)
    finally:
        redis_proxy.stop()


def test_ipv6_clients_share_the_budget_of_their_64(database):
    app = make_app()
    addresses = [f"2001:db8:1:2:{n:x}::{n:x}" for n in range(1, 6)]  # five hosts of one /64
    assert [register_many(client_from(app, a), 1, a.replace(":", "-"))[0] for a in addresses] == [201] * 5
    assert register_many(client_from(app, "2001:db8:1:2:ffff::1"), 1, "sixth") == [429]
    assert register_many(client_from(app, "2001:db8:1:3::1"), 1, "next64") == [201]  # another /64


@pytest.mark.parametrize(
    "address, key",
    [
        ("203.0.113.7", "ip:203.0.113.7"),
        ("::ffff:203.0.113.7", "ip:203.0.113.7"),
        ("2001:db8::1", "ip:2001:db8::/64"),
        ("unknown", "ip:unknown"),  # not an address (a proxy's X-Forwarded-For may say anything)
    ],
)
def test_the_address_key_of_ipv4_is_the_address_and_of_ipv6_its_64(database, address, key):
    register_many(client_from(make_app(), address), 1)
    assert any(f"/{key}/" in stored for stored in rate_limit_keys()), rate_limit_keys()


def test_concurrent_guesses_verify_at_most_the_cap(database):
    """The issue's race: 40 concurrent wrong passwords from 40 addresses were all verified (cap 10),
    each counted only after its 401."""
    app = make_app(RATELIMIT_TOKEN_PER_USERNAME="10/hour", PASSWORD_HASH_MEMORY_COST=8192)
    register(client_from(app, "10.4.0.1"), "raced@example.com")
    start = threading.Barrier(40)

    def guess(n):
        client = client_from(app, f"10.4.1.{n}")
        start.wait()
        return wrong_logins(client, "raced@example.com", 1)[0]

    with ThreadPoolExecutor(40) as pool:
        statuses = list(pool.map(guess, range(40)))
    assert statuses.count(401) + statuses.count(429) == 40
    assert statuses.count(401) <= 10  # each 401 verified a password


def test_only_fixed_windows_are_accepted(database):
    """A successful login gives its attempt back by counting down, which only a fixed window undoes."""
    with pytest.raises(RuntimeError, match="RATELIMIT_STRATEGY must be fixed-window"):
        make_app(RATELIMIT_STRATEGY="moving-window")
