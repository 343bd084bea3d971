"""The API, orders: GET /orders/user/{user_id}/ — newest first, pagination (by page and by
cursor), a capped total, status filter, access."""

import base64
import json
import uuid
from unittest.mock import ANY

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from orders_app.extensions import db
from orders_app.orders import service

from support.client import place_order
from support.settings import TEST_DATABASE_URL, make_app


def item(n):
    return [{"name": f"Item {n}", "quantity": 1, "price": f"{n}.00"}]


@pytest.fixture
def five_orders(client, alice):
    """Alice's orders, oldest first; the 2nd and 4th are PAID."""
    orders = [place_order(client, alice["headers"], item(n)) for n in range(1, 6)]
    for order in orders[1::2]:
        client.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=alice["headers"])
    return orders


def list_orders(client, headers, user_id, query=""):
    return client.get(f"/orders/user/{user_id}/{query}", headers=headers)


def pagination_of(response):
    return json.loads(response.headers["X-Pagination"])


def walk_by_cursor(client, headers, user_id, query="?page_size=2"):
    """Every page from the first on, following next_cursor; returns the pages' order ids."""
    pages, response = [], list_orders(client, headers, user_id, query)
    while True:
        assert response.status_code == 200, response.json
        pages.append([order["id"] for order in response.json])
        cursor = pagination_of(response).get("next_cursor")
        if cursor is None:
            return pages
        response = list_orders(client, headers, user_id, f"{query}&cursor={cursor}")


def test_a_users_orders_come_newest_first(client, alice, five_orders):
    response = list_orders(client, alice["headers"], alice["user"]["id"])
    assert response.status_code == 200
    assert [o["id"] for o in response.json] == [o["id"] for o in reversed(five_orders)]
    assert json.loads(response.headers["X-Pagination"]) == {
        "total": 5, "total_pages": 1, "first_page": 1, "last_page": 1, "page": 1
    }  # fmt: skip


def test_pages(client, alice, five_orders):
    response = list_orders(client, alice["headers"], alice["user"]["id"], "?page=2&page_size=2")
    assert [o["id"] for o in response.json] == [five_orders[2]["id"], five_orders[1]["id"]]
    pagination = pagination_of(response)
    assert pagination.pop("next_cursor")
    assert pagination == {
        "total": 5, "total_pages": 3, "first_page": 1, "last_page": 3, "page": 2,
        "previous_page": 1, "next_page": 3,
    }  # fmt: skip


def test_following_next_cursor_reads_every_order_once(client, alice, five_orders):
    newest_first = [order["id"] for order in reversed(five_orders)]
    pages = walk_by_cursor(client, alice["headers"], alice["user"]["id"])
    assert pages == [newest_first[0:2], newest_first[2:4], newest_first[4:]]


def test_a_page_by_cursor_has_a_total_and_no_page_numbers(client, alice, five_orders):
    first = list_orders(client, alice["headers"], alice["user"]["id"], "?page_size=2")
    cursor = pagination_of(first)["next_cursor"]
    second = list_orders(client, alice["headers"], alice["user"]["id"], f"?page_size=2&cursor={cursor}")
    assert pagination_of(second) == {"total": 5, "next_cursor": pagination_of(second)["next_cursor"]}
    last = list_orders(client, alice["headers"], alice["user"]["id"], f"?page_size=3&cursor={cursor}")
    assert pagination_of(last) == {"total": 5}  # nothing follows: no next_cursor


def test_a_page_number_continues_by_cursor(client, alice, five_orders):
    page_two = list_orders(client, alice["headers"], alice["user"]["id"], "?page=2&page_size=2")
    cursor = pagination_of(page_two)["next_cursor"]
    page_three = list_orders(client, alice["headers"], alice["user"]["id"], f"?page_size=2&cursor={cursor}")
    assert [o["id"] for o in page_three.json] == [five_orders[0]["id"]]


def test_the_cursor_keeps_the_status_filter_and_order(client, alice, five_orders):
    pages = walk_by_cursor(client, alice["headers"], alice["user"]["id"], "?page_size=1&status=paid")
    assert pages == [[five_orders[3]["id"]], [five_orders[1]["id"]]]


def test_orders_placed_at_the_same_instant_are_each_listed_once(app, client, alice):
    """One transaction: every order gets the same created_at, and the id orders them."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO orders (id, user_id, items, total_price, status) "
                "SELECT gen_random_uuid(), :user, '[]', 1, 'PENDING' FROM generate_series(1, 7)"
            ),
            {"user": alice["user"]["id"]},
        )
        db.session.commit()
    pages = walk_by_cursor(client, alice["headers"], alice["user"]["id"])
    listed = [order_id for page in pages for order_id in page]
    assert len(listed) == len(set(listed)) == 7
    assert listed == sorted(listed, reverse=True)  # ties broken by id, newest first


@pytest.mark.parametrize("cursor", ["nonsense", "bm9uc2Vuc2U=", "MjAyNi0xMS0zMHxub3QtYS11dWlk", "%00"])
def test_a_cursor_the_api_did_not_give_is_422(client, alice, cursor):
    response = list_orders(client, alice["headers"], alice["user"]["id"], f"?cursor={cursor}")
    assert response.status_code == 422
    assert list(response.json["errors"]["query"]) == ["cursor"]


def cursor_of(position):
    return base64.urlsafe_b64encode(f"{position}|{uuid.uuid4()}".encode()).decode()


# Python reads each of these times; PostgreSQL refuses the first two, the others are not as given out.
@pytest.mark.parametrize(
    "created_at",
    [
        "2026-11-30T12:00:00+16:00",
        "2026-11-30T12:00:00+00:00:30.500000",
        "2026-11-30T12:00:00.1234+00:00",
        "2026-11-30T13:00:00+01:00",
        "2026-11-30T12:00:00",
        "0001-01-01T00:00:00+05:00",
    ],
)
def test_a_cursor_not_exactly_as_given_out_is_422(client, alice, created_at):
    response = list_orders(client, alice["headers"], alice["user"]["id"], f"?cursor={cursor_of(created_at)}")
    assert response.status_code == 422
    assert response.json["errors"]["query"] == {"cursor": ["Not a cursor this API gave out."]}


def test_cursors_work_whatever_the_sessions_time_zone(alice, five_orders):
    url = make_url(TEST_DATABASE_URL).update_query_dict({"options": "-c timezone=Asia/Kolkata"})
    app = make_app(SQLALCHEMY_DATABASE_URI=url.render_as_string(hide_password=False))
    client = app.test_client()
    first = list_orders(client, alice["headers"], alice["user"]["id"]).json[0]
    assert first["created_at"].endswith("+05:30")  # read in the session's time zone
    pages = walk_by_cursor(client, alice["headers"], alice["user"]["id"])
    with app.app_context():
        db.engine.dispose()
    assert [order_id for page in pages for order_id in page] == [
        order["id"] for order in reversed(five_orders)
    ]


def test_cursor_and_page_together_are_422(client, alice, five_orders):
    cursor = pagination_of(list_orders(client, alice["headers"], alice["user"]["id"], "?page_size=2"))[
        "next_cursor"
    ]
    response = list_orders(client, alice["headers"], alice["user"]["id"], f"?page=2&cursor={cursor}")
    assert response.status_code == 422
    assert list(response.json["errors"]["query"]) == ["cursor"]


def test_beyond_the_count_limit_the_total_is_left_out(client, alice, five_orders, monkeypatch):
    monkeypatch.setattr(service, "COUNT_LIMIT", 3)
    response = list_orders(client, alice["headers"], alice["user"]["id"], "?page=2&page_size=2")
    pagination = pagination_of(response)
    assert pagination.pop("next_cursor")
    assert pagination == {"first_page": 1, "page": 2, "previous_page": 1, "next_page": 3}
    last = list_orders(client, alice["headers"], alice["user"]["id"], "?page=3&page_size=2")
    assert pagination_of(last) == {"first_page": 1, "page": 3, "previous_page": 2}
    monkeypatch.setattr(service, "COUNT_LIMIT", 5)  # exactly at the limit: counted
    assert pagination_of(list_orders(client, alice["headers"], alice["user"]["id"]))["total"] == 5


def test_a_page_past_the_end_is_empty(client, alice, five_orders):
    response = list_orders(client, alice["headers"], alice["user"]["id"], "?page=9&page_size=2")
    assert response.status_code == 200
    assert response.json == []


def test_a_page_far_past_the_end_is_empty_too(client, alice, five_orders):
    response = list_orders(client, alice["headers"], alice["user"]["id"], "?page=341606371064273283")
    assert response.status_code == 200
    assert response.json == []


def test_a_huge_user_id_is_an_empty_list_for_an_admin(client, admin):
    assert list_orders(client, admin["headers"], 10**30).json == []


def test_unknown_query_parameters_are_422(client, alice):
    response = list_orders(client, alice["headers"], alice["user"]["id"], "?pagesize=5")
    assert response.status_code == 422
    assert list(response.json["errors"]["query"]) == ["pagesize"]


def test_default_page_size_is_20(client, alice):
    for n in range(21):
        place_order(client, alice["headers"], item(n + 1))
    response = list_orders(client, alice["headers"], alice["user"]["id"])
    assert len(response.json) == 20
    assert pagination_of(response)["total_pages"] == 2


@pytest.mark.parametrize("spelling", ["PAID", "paid"])
def test_status_filter(client, alice, five_orders, spelling):
    response = list_orders(client, alice["headers"], alice["user"]["id"], f"?status={spelling}")
    assert [o["id"] for o in response.json] == [five_orders[3]["id"], five_orders[1]["id"]]
    assert json.loads(response.headers["X-Pagination"])["total"] == 2


@pytest.mark.parametrize("query", ["?status=DONE", "?page=0", "?page_size=0", "?page_size=101", "?page=x"])
def test_bad_query_parameters_are_422(client, alice, query):
    response = list_orders(client, alice["headers"], alice["user"]["id"], query)
    assert response.status_code == 422
    assert response.json["errors"] == {"query": {query[1:].split("=")[0]: ANY}}


def test_only_the_users_own_orders_are_listed(client, alice, bob, five_orders):
    place_order(client, bob["headers"])
    response = list_orders(client, alice["headers"], alice["user"]["id"])
    assert {o["user_id"] for o in response.json} == {alice["user"]["id"]}


def test_another_users_list_is_403(client, alice, bob, five_orders):
    response = list_orders(client, bob["headers"], alice["user"]["id"])
    assert response.status_code == 403
    assert response.json["code"] == 403


def test_admins_list_any_users_orders(client, alice, admin, five_orders):
    response = list_orders(client, admin["headers"], alice["user"]["id"])
    assert response.status_code == 200
    assert len(response.json) == 5
    assert list_orders(client, admin["headers"], 999_999).json == []


def test_an_empty_list(client, alice):
    response = list_orders(client, alice["headers"], alice["user"]["id"])
    assert response.status_code == 200
    assert response.json == []
    assert json.loads(response.headers["X-Pagination"])["total"] == 0


def test_the_list_has_an_etag_that_changes_with_the_orders(client, alice, five_orders):
    first = list_orders(client, alice["headers"], alice["user"]["id"])
    same = client.get(
        f"/orders/user/{alice['user']['id']}/",
        headers={**alice["headers"], "If-None-Match": first.headers["ETag"]},
    )
    assert same.status_code == 304
    place_order(client, alice["headers"])
    assert list_orders(client, alice["headers"], alice["user"]["id"]).headers["ETag"] != first.headers["ETag"]


def test_listing_needs_a_token(client, alice):
    assert client.get(f"/orders/user/{alice['user']['id']}/").status_code == 401


def test_a_non_integer_user_id_is_404(client, alice):
    assert list_orders(client, alice["headers"], "abc").status_code == 404
