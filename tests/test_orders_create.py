"""The API, orders: POST /orders/ — validation, totals, Location, Idempotency-Key."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select, update

from orders_app.extensions import db
from orders_app.models import IdempotencyKey, Order
from orders_app.orders.service import mark_processed

from support.client import place_order

BREAD = {"name": "Bread", "quantity": 2, "price": "10.50"}
BUTTER = {"name": "Butter", "quantity": 1, "price": 5}


def order_count(app):
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Order))


def test_create_returns_the_order_with_a_server_computed_total(client, alice):
    response = client.post("/orders/", json={"items": [BREAD, BUTTER]}, headers=alice["headers"])
    assert response.status_code == 201
    order = response.json
    assert set(order) == {
        "id", "user_id", "items", "total_price", "status", "created_at", "updated_at", "processed_at"
    }  # fmt: skip
    assert order["user_id"] == alice["user"]["id"]
    assert order["items"] == [BREAD, {"name": "Butter", "quantity": 1, "price": "5.00"}]
    assert order["total_price"] == "26.00"
    assert order["status"] == "PENDING"
    assert order["processed_at"] is None
    assert order["created_at"].endswith("+00:00")
    assert response.headers["Location"] == f"/orders/{order['id']}/"


def test_the_location_serves_the_order(client, alice):
    response = client.post("/orders/", json={"items": [BREAD]}, headers=alice["headers"])
    assert client.get(response.headers["Location"], headers=alice["headers"]).json == response.json


@pytest.mark.parametrize("claimed", ["26.00", 26, 26.0, "26"])
def test_a_matching_client_total_is_accepted(client, alice, claimed):
    response = client.post(
        "/orders/", json={"items": [BREAD, BUTTER], "total_price": claimed}, headers=alice["headers"]
    )
    assert response.status_code == 201
    assert response.json["total_price"] == "26.00"


def test_a_client_total_that_differs_is_422_and_creates_nothing(app, client, alice):
    body = {"items": [BREAD, BUTTER], "total_price": "25.99"}
    response = client.post("/orders/", json=body, headers=alice["headers"])
    assert response.status_code == 422
    assert "total_price" in response.json["errors"]["json"]
    assert order_count(app) == 0


def item(**changes):
    return {**BREAD, **changes}


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": [BREAD] * 101}, "items"),
        ({"items": "Bread"}, "items"),
        ({"items": [None]}, "items.0"),
        ({"items": [item(name="")]}, "items.0.name"),
        ({"items": [item(name="x" * 201)]}, "items.0.name"),
        ({"items": [item(name="   ")]}, "items.0.name"),
        ({"items": [item(name=7)]}, "items.0.name"),
        ({"items": [item(quantity=0)]}, "items.0.quantity"),
        ({"items": [item(quantity=10_001)]}, "items.0.quantity"),
        ({"items": [item(quantity=1.5)]}, "items.0.quantity"),
        ({"items": [item(quantity="2")]}, "items.0.quantity"),
        ({"items": [item(quantity=True)]}, "items.0.quantity"),
        ({"items": [item(quantity=None)]}, "items.0.quantity"),
        ({"items": [item(price=0)]}, "items.0.price"),
        ({"items": [item(price="-1.00")]}, "items.0.price"),
        ({"items": [item(price=1.005)]}, "items.0.price"),
        ({"items": [item(price="1.005")]}, "items.0.price"),
        ({"items": [item(price="abc")]}, "items.0.price"),
        ({"items": [item(price="NaN")]}, "items.0.price"),
        ({"items": [item(price="Infinity")]}, "items.0.price"),
        ({"items": [item(price="1e100")]}, "items.0.price"),
        ({"items": [item(price=1e308)]}, "items.0.price"),
        ({"items": [item(price=True)]}, "items.0.price"),
        ({"items": [item(price=[1])]}, "items.0.price"),
        ({"items": [item(colour="red")]}, "items.0.colour"),
        ({"items": [{"name": "Bread", "quantity": 1}]}, "items.0.price"),
        ({"items": [BREAD], "discount": 5}, "discount"),
        ({"items": [BREAD], "total_price": "1.001"}, "total_price"),
        ({"items": [item(quantity=10_000, price="99999999.99")]}, "items"),  # total beyond NUMERIC(10, 2)
    ],
)
def test_invalid_orders_are_422_and_create_nothing(app, client, alice, body, field):
    response = client.post("/orders/", json=body, headers=alice["headers"])
    assert response.status_code == 422, response.json
    assert invalid_field(response.json["errors"]["json"]) == field
    assert order_count(app) == 0


def invalid_field(errors):
    """The one field ``errors`` names, as a dotted path (``items.0.price``)."""
    (name, messages), *others = errors.items()
    assert not others, errors
    return name if isinstance(messages, list) else f"{name}.{invalid_field(messages)}"


@pytest.mark.parametrize(
    "items, total",
    [
        ([item(quantity=1, price="0.01")], "0.01"),
        ([item(quantity=10_000, price="9999.99")], "99999900.00"),
        ([item(name="x" * 200, price=1.5)], "3.00"),
        ([item(price="7.1")], "14.20"),
        ([item(quantity=1, price=1)] * 100, "100.00"),
    ],
)
def test_boundary_values_are_accepted(client, alice, items, total):
    assert place_order(client, alice["headers"], items)["total_price"] == total


def test_creating_needs_a_token(client):
    assert client.post("/orders/", json={"items": [BREAD]}).status_code == 401


# --- Idempotency-Key ------------------------------------------------------------------------


def test_the_same_key_returns_the_first_order_and_creates_nothing(app, client, alice):
    key = {"Idempotency-Key": "checkout-42"}
    first = client.post("/orders/", json={"items": [BREAD]}, headers={**alice["headers"], **key})
    again = client.post("/orders/", json={"items": [BREAD]}, headers={**alice["headers"], **key})
    assert first.status_code == again.status_code == 201
    assert again.json == first.json
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert order_count(app) == 1


def test_a_replay_answers_the_first_response_even_after_the_order_changed(app, client, alice):
    key = {**alice["headers"], "Idempotency-Key": "checkout-44"}
    first = client.post("/orders/", json={"items": [BREAD]}, headers=key)
    client.patch(f"/orders/{first.json['id']}/", json={"status": "PAID"}, headers=alice["headers"])
    with app.app_context():
        mark_processed(uuid.UUID(first.json["id"]))
    now = client.get(f"/orders/{first.json['id']}/", headers=alice["headers"]).json
    assert (now["status"], now["processed_at"] is None) == ("PAID", False)

    again = client.post("/orders/", json={"items": [BREAD]}, headers=key)
    assert again.status_code == 201
    assert again.json == first.json  # PENDING, processed_at null: the answer the first request got
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert client.get(f"/orders/{first.json['id']}/", headers=alice["headers"]).json == now


def test_the_same_order_written_differently_is_the_same_body(client, alice):
    key = {**alice["headers"], "Idempotency-Key": "k"}
    first = client.post("/orders/", json={"items": [item(price="10.50")]}, headers=key)
    again = client.post("/orders/", json={"items": [item(price=10.5)]}, headers=key)
    assert again.json["id"] == first.json["id"]


def test_the_same_key_with_another_body_is_422_and_creates_nothing(app, client, alice):
    key = {**alice["headers"], "Idempotency-Key": "checkout-43"}
    client.post("/orders/", json={"items": [BREAD]}, headers=key)
    response = client.post("/orders/", json={"items": [BREAD, BUTTER]}, headers=key)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.json["errors"]["headers"]
    assert order_count(app) == 1


def test_keys_belong_to_one_user(client, alice, bob):
    mine = place_order(client, alice["headers"], **{"Idempotency-Key": "shared"})
    theirs = place_order(client, bob["headers"], **{"Idempotency-Key": "shared"})
    assert mine["id"] != theirs["id"]
    assert theirs["user_id"] == bob["user"]["id"]


def test_a_key_older_than_24_hours_creates_a_new_order(app, client, alice):
    first = place_order(client, alice["headers"], **{"Idempotency-Key": "old"})
    with app.app_context():
        db.session.execute(
            update(IdempotencyKey).values(created_at=func.now() - func.make_interval(0, 0, 0, 0, 25))
        )
        db.session.commit()
    second = place_order(client, alice["headers"], [BUTTER], **{"Idempotency-Key": "old"})
    assert second["id"] != first["id"]
    assert order_count(app) == 2


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_invalid_key_is_422_and_creates_nothing(app, client, alice, key):
    response = client.post(
        "/orders/", json={"items": [BREAD]}, headers={**alice["headers"], "Idempotency-Key": key}
    )
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["headers"]
    assert list(response.json["errors"]["headers"]) == ["Idempotency-Key"]
    assert order_count(app) == 0


def test_simultaneous_requests_with_one_key_create_one_order(app, alice):
    parallel = 8
    barrier = threading.Barrier(parallel)
    headers = {**alice["headers"], "Idempotency-Key": "double-click"}

    def post(_):
        client = app.test_client()
        barrier.wait()
        return client.post("/orders/", json={"items": [BREAD]}, headers=headers)

    with ThreadPoolExecutor(parallel) as pool:
        responses = list(pool.map(post, range(parallel)))
    assert [r.status_code for r in responses] == [201] * parallel
    assert len({r.json["id"] for r in responses}) == 1
    assert order_count(app) == 1
