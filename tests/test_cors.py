"""The API, protection: CORS for the origins in CORS_ORIGINS only."""

import pytest

from support.settings import make_app

SHOP = "https://shop.example.com"


@pytest.fixture
def client(database):
    return make_app(CORS_ORIGINS=f"{SHOP}, http://localhost:3000").test_client()


def test_an_allowed_origin_gets_cors_headers_without_credentials(client):
    response = client.get("/health", headers={"Origin": SHOP})
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Access-Control-Allow-Credentials" not in response.headers  # bearer tokens, no cookies
    assert "Origin" in response.headers["Vary"]
    exposed = response.headers["Access-Control-Expose-Headers"]
    for header in ("ETag", "Location", "X-Pagination", "X-Request-ID", "Retry-After"):
        assert header in exposed


def test_errors_carry_cors_headers_too(client):
    response = client.get("/users/me", headers={"Origin": SHOP})
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == SHOP


def test_another_origin_gets_no_cors_headers(client):
    response = client.get("/health", headers={"Origin": "https://evil.example.net"})
    assert response.status_code == 200
    assert not [name for name, _ in response.headers.items() if name.startswith("Access-Control-")]


def test_a_preflight_from_an_allowed_origin_is_answered(client):
    response = client.options(
        "/orders/",
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "Authorization, Content-Type, Idempotency-Key, If-Match",
        },
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    for header in ("authorization", "content-type", "idempotency-key", "if-match"):
        assert header in allowed


def test_a_preflight_from_another_origin_gets_no_cors_headers(client):
    response = client.options(
        "/orders/", headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in response.headers


def test_preflights_are_not_rate_limited(database):
    client = make_app(CORS_ORIGINS=SHOP, RATELIMIT_APPLICATION="2/minute").test_client()
    preflight = {"Origin": SHOP, "Access-Control-Request-Method": "POST"}
    assert {client.options("/orders/", headers=preflight).status_code for _ in range(5)} == {200}


def test_no_origin_is_allowed_by_default(database):
    response = make_app(CORS_ORIGINS="").test_client().get("/health", headers={"Origin": SHOP})
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    "entry",
    ["*", "https://*.example.com", "https://shop.example.com/", "https://shop.example.com/app",
     "shop.example.com", "https://shop.example.com.*", r"https://shop\.example\.com", "ftp://shop.example.com"],
)  # fmt: skip
def test_wildcards_patterns_and_non_origins_are_refused_at_startup(database, entry):
    with pytest.raises(RuntimeError, match="CORS_ORIGINS"):
        make_app(CORS_ORIGINS=f"{SHOP}, {entry}")


def test_a_lookalike_origin_is_not_allowed(client):
    response = client.get("/health", headers={"Origin": "https://xshop.example.com.attacker.net"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_origins_with_ports_and_addresses_are_exact_origins(database):
    client = make_app(CORS_ORIGINS="http://127.0.0.1:8080, http://localhost:3000").test_client()
    response = client.get("/health", headers={"Origin": "http://127.0.0.1:8080"})
    assert response.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:8080"
