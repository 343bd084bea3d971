"""NUL characters, which PostgreSQL refuses in text and jsonb, are a 422 in every string field."""

import pytest

from helpers import PASSWORD, register


def assert_refused(response, *path):
    assert response.status_code == 422, response.json
    errors = response.json["errors"]
    for key in path:
        errors = errors[key]
    assert errors == ["Must not contain NUL characters."]


def test_a_nul_in_the_login_form_is_422(client):
    register(client, "a@example.com")
    response = client.post("/token", data={"username": "a\x00b", "password": PASSWORD})
    assert_refused(response, "json_or_form", "username")


def test_a_nul_in_a_json_login_is_422(client):
    response = client.post("/token", json={"username": "a@example.com", "password": "pass\x00word"})
    assert_refused(response, "json_or_form", "password")


@pytest.mark.parametrize("field", ["email", "password"])
def test_a_nul_in_a_registration_is_422(client, field):
    body = {"email": "a@example.com", "password": PASSWORD, field: "a\x00b@example.com"}
    assert_refused(client.post("/register/", json=body), "json", field)


def test_a_nul_in_an_item_name_is_422(client, alice):
    body = {
        "items": [
            {"name": "Bread", "quantity": 1, "price": "1.00"},
            {"name": "Bu\x00tter", "quantity": 1, "price": "2.00"},
        ]
    }
    response = client.post("/orders/", json=body, headers=alice["headers"])
    assert_refused(response, "json", "items", "1", "name")


def test_a_nul_in_a_status_is_422(client, alice):
    order = client.post(
        "/orders/", json={"items": [{"name": "Tea", "quantity": 1, "price": 1}]}, headers=alice["headers"]
    ).json
    response = client.patch(f"/orders/{order['id']}/", json={"status": "PA\x00ID"}, headers=alice["headers"])
    assert_refused(response, "json", "status")


def test_a_nul_in_a_query_parameter_is_422(client, alice):
    response = client.get("/orders/user/1/?status=PA%00ID", headers=alice["headers"])
    assert_refused(response, "query", "status")
