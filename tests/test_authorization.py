"""Who may do what: every endpoint for an anonymous caller, the owner, another user and an admin."""

import pytest

from support.client import bearer, login, place_order
from support.settings import PASSWORD

OWNER_ONLY = {"anonymous": 401, "owner": 200, "other": 404, "admin": 200, "gone": 401}
# (method, path template, body) -> expected status per caller.
MATRIX = [
    ("GET", "/users/me", None, {"anonymous": 401, "owner": 200, "other": 200, "admin": 200, "gone": 401}),
    ("POST", "/orders/", {"items": [{"name": "Tea", "quantity": 1, "price": 1}]},
     {"anonymous": 401, "owner": 201, "other": 201, "admin": 201, "gone": 401}),
    ("GET", "/orders/{order_id}/", None, OWNER_ONLY),
    ("PATCH", "/orders/{order_id}/", {"status": "PAID"}, OWNER_ONLY),
    ("GET", "/orders/user/{owner_id}/", None,
     {"anonymous": 401, "owner": 200, "other": 403, "admin": 200, "gone": 401}),
    ("GET", "/orders/user/{gone_id}/", None,
     {"anonymous": 401, "owner": 403, "other": 403, "admin": 200, "gone": 401}),
    ("POST", "/logout", None, {"anonymous": 401, "owner": 204, "other": 204, "admin": 204, "gone": 401}),
]  # fmt: skip
# "gone": a user deleted after logging in (by hand: the service has no way to delete users).
CALLERS = ["anonymous", "owner", "other", "admin", "gone"]
EMAILS = {"owner": "alice@example.com", "other": "bob@example.com", "admin": "admin@example.com"}


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, body, expected", MATRIX, ids=[f"{m} {p}" for m, p, _, _ in MATRIX])
def test_authorization_matrix(client, alice, bob, admin, gone, caller, method, path, body, expected):
    order = place_order(client, alice["headers"])
    sessions = {"anonymous": None, "owner": alice, "other": bob, "admin": admin, "gone": gone}
    headers = sessions[caller]["headers"] if sessions[caller] else {}
    me = client.get("/users/me", headers=headers).json  # the caller, before the request
    url = path.format(order_id=order["id"], owner_id=alice["user"]["id"], gone_id=gone["user"]["id"])
    response = client.open(url, method=method, json=body, headers=headers)
    assert response.status_code == expected[caller], response.json
    if response.status_code == 401:
        assert response.headers["WWW-Authenticate"] == "Bearer"
    if response.status_code >= 400:
        assert response.json["code"] == response.status_code  # an error body: no data of anyone
    # Whose data came back, and that a refused request changed nothing.
    fresh = bearer(login(client, "alice@example.com")["access_token"])  # alice may have logged out
    stored = client.get(f"/orders/{order['id']}/", headers=fresh).json
    if not (method == "PATCH" and response.status_code == 200):
        assert stored == order
    if response.status_code == 200 and url == "/users/me":
        assert (response.json["id"], response.json["email"]) == (me["id"], EMAILS[caller])
    elif response.status_code == 201:
        assert response.json["user_id"] == me["id"]
    elif response.status_code == 200 and "{order_id}" in path:
        assert (response.json["id"], response.json["user_id"]) == (order["id"], alice["user"]["id"])
        assert stored["status"] == ("PAID" if method == "PATCH" else "PENDING")
    elif response.status_code == 200:  # a user's orders
        owner = gone if "{gone_id}" in path else alice
        assert [o["user_id"] for o in response.json] == [owner["user"]["id"]] * len(response.json)
        assert [o["id"] for o in response.json] == ([order["id"]] if owner is alice else [])
    elif response.status_code == 204:  # logged out: the caller's token only
        assert client.get("/users/me", headers=headers).status_code == 401
        survivor = bob if caller == "owner" else alice
        assert client.get("/users/me", headers=survivor["headers"]).status_code == 200


@pytest.mark.parametrize("caller", CALLERS)
def test_refresh_needs_a_refresh_token_whoever_calls(client, alice, bob, admin, gone, caller):
    sessions = {"owner": alice, "other": bob, "admin": admin}
    if caller == "anonymous":
        assert client.post("/token/refresh").status_code == 401
    elif caller == "gone":
        refresh = {"Authorization": f"Bearer {gone['tokens']['refresh_token']}"}
        assert client.post("/token/refresh", headers=refresh).status_code == 401
    else:
        tokens = sessions[caller]["tokens"]
        assert (
            client.post(
                "/token/refresh", headers={"Authorization": f"Bearer {tokens['refresh_token']}"}
            ).status_code
            == 200
        )
        assert client.post("/token/refresh", headers=sessions[caller]["headers"]).status_code == 401


def test_public_endpoints_need_no_token(client):
    assert (
        client.post("/register/", json={"email": "new@example.com", "password": PASSWORD}).status_code == 201
    )
    assert (
        client.post("/token", data={"username": "new@example.com", "password": PASSWORD}).status_code == 200
    )
    for path in ("/health", "/health/ready", "/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
