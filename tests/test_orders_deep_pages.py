"""The API, orders: how deep a page number may go (LIST_MAX_PAGE); deeper, the cursor."""

import json

import pytest

from orders_app.extensions import db
from orders_app.orders import service

from support.client import place_order
from support.settings import make_app

MAX_PAGE = 2


@pytest.fixture
def app(database):
    app = make_app(LIST_MAX_PAGE=MAX_PAGE)
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def five_orders(client, alice):
    """Alice's orders, newest first: three pages of two, the cap at page 2."""
    items = [{"name": "Bread", "quantity": 1, "price": "1.00"}]
    return [place_order(client, alice["headers"], items)["id"] for _ in range(5)][::-1]


def page(client, alice, query, page_size=2):
    path = f"/orders/user/{alice['user']['id']}/?page_size={page_size}&{query}"
    return client.get(path, headers=alice["headers"])


def test_a_page_past_the_cap_is_a_422_naming_page_and_the_cursor(client, alice, five_orders):
    response = page(client, alice, "page=3")
    assert response.status_code == 422
    [message] = response.json["errors"]["query"]["page"]
    assert "at most 2" in message and "next_cursor" in message and "?cursor=" in message


def test_a_page_past_the_cap_and_past_a_counted_end_is_empty_as_any_page_past_the_end(
    client, alice, five_orders
):
    response = page(client, alice, "page=3", page_size=10)
    assert response.status_code == 200
    assert response.json == []


def test_past_the_cap_an_uncounted_list_is_a_422_as_its_end_is_unknown(
    client, alice, five_orders, monkeypatch
):
    monkeypatch.setattr(service, "COUNT_LIMIT", 3)
    response = page(client, alice, "page=9")
    assert response.status_code == 422
    assert "page" in response.json["errors"]["query"]


def test_the_last_page_within_the_cap_advertises_the_cursor_not_the_next_page(client, alice, five_orders):
    response = page(client, alice, "page=2")
    assert response.status_code == 200
    assert [order["id"] for order in response.json] == five_orders[2:4]
    pagination = json.loads(response.headers["X-Pagination"])
    cursor = pagination.pop("next_cursor")
    assert pagination == {
        "total": 5, "total_pages": 3, "first_page": 1, "last_page": 2, "page": 2, "previous_page": 1
    }  # fmt: skip
    following = page(client, alice, f"cursor={cursor}")
    assert [order["id"] for order in following.json] == five_orders[4:]


def test_uncounted_lists_stop_advertising_pages_at_the_cap_too(client, alice, five_orders, monkeypatch):
    monkeypatch.setattr(service, "COUNT_LIMIT", 3)
    pagination = json.loads(page(client, alice, "page=1").headers["X-Pagination"])
    assert pagination["next_page"] == 2
    pagination = json.loads(page(client, alice, "page=2").headers["X-Pagination"])
    assert "next_page" not in pagination and "last_page" not in pagination
    assert "next_cursor" in pagination


def test_cursors_go_past_the_cap(client, alice, five_orders):
    seen, query = [], "page=1"
    while query:
        response = page(client, alice, query)
        seen += [order["id"] for order in response.json]
        cursor = json.loads(response.headers["X-Pagination"]).get("next_cursor")
        query = cursor and f"cursor={cursor}"
    assert seen == five_orders


def test_the_openapi_document_states_the_cap(client):
    operation = client.get("/openapi.json").json["paths"]["/orders/user/{user_id}/"]["get"]
    [parameter] = [p for p in operation["parameters"] if p.get("name") == "page"]
    assert parameter["schema"]["maximum"] == MAX_PAGE
    assert "At most 2" in parameter["description"] and "next_cursor" in parameter["description"]
