"""What no string can be stored as, a 422 in every string field: a NUL character (PostgreSQL
refuses it in text and jsonb) and a lone surrogate (JSON's "\\ud800": not Unicode that UTF-8 can
write, so argon2, orjson and psycopg2 each refuse it)."""

import json

import pytest

from support.client import register
from support.settings import PASSWORD

NUL = ("\x00", "Must not contain NUL characters.")
SURROGATE = ("\ud800", "Must not contain lone surrogates (not valid Unicode).")
CHARACTERS = pytest.mark.parametrize("character, reason", [NUL, SURROGATE], ids=["nul", "surrogate"])


def send_json(client, method, path, body, headers=None):
    """``body`` as JSON, a lone surrogate written as its escape (as a client would send it)."""
    headers = {"Content-Type": "application/json", **(headers or {})}
    return client.open(path, method=method, data=json.dumps(body), headers=headers)


def assert_refused(response, reason, *path):
    assert response.status_code == 422, response.json
    errors = response.json["errors"]
    for key in path:
        errors = errors[key]
    assert errors == [reason]


def test_a_nul_in_the_login_form_is_422(client):
    register(client, "a@example.com")
    response = client.post("/token", data={"username": "a\x00b", "password": PASSWORD})
    assert_refused(response, NUL[1], "json_or_form", "username")


@CHARACTERS
@pytest.mark.parametrize("field", ["username", "password"])
def test_a_json_login_is_422(client, character, reason, field):
    register(client, "a@example.com")
    body = {"username": "a@example.com", "password": PASSWORD, field: f"pass{character}word"}
    assert_refused(send_json(client, "POST", "/token", body), reason, "json_or_form", field)


@CHARACTERS
@pytest.mark.parametrize("field", ["email", "password"])
def test_a_registration_is_422(client, character, reason, field):
    body = {"email": "a@example.com", "password": PASSWORD, field: f"a{character}b@example.com"}
    assert_refused(send_json(client, "POST", "/register/", body), reason, "json", field)


@CHARACTERS
def test_an_item_name_is_422(client, alice, character, reason):
    body = {
        "items": [
            {"name": "Bread", "quantity": 1, "price": "1.00"},
            {"name": f"Bu{character}tter", "quantity": 1, "price": "2.00"},
        ]
    }
    response = send_json(client, "POST", "/orders/", body, alice["headers"])
    assert_refused(response, reason, "json", "items", "1", "name")


@CHARACTERS
def test_a_status_is_422(client, alice, character, reason):
    order = client.post(
        "/orders/", json={"items": [{"name": "Tea", "quantity": 1, "price": 1}]}, headers=alice["headers"]
    ).json
    body = {"status": f"PA{character}ID"}
    response = send_json(client, "PATCH", f"/orders/{order['id']}/", body, alice["headers"])
    assert_refused(response, reason, "json", "status")


def test_a_nul_in_a_query_parameter_is_422(client, alice):
    response = client.get("/orders/user/1/?status=PA%00ID", headers=alice["headers"])
    assert_refused(response, NUL[1], "query", "status")


def test_paired_surrogates_are_one_character_and_welcome(client, alice):
    body = '{"items": [{"name": "Tea \\ud83c\\udf75", "quantity": 1, "price": "1.00"}]}'
    headers = {"Content-Type": "application/json", **alice["headers"]}
    response = client.post("/orders/", data=body, headers=headers)
    assert response.status_code == 201, response.json
    assert response.json["items"][0]["name"] == "Tea \U0001f375"
