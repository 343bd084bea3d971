"""The API, orders: PATCH /orders/{id}/ — the status machine, If-Match, row lock, ownership."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, text

from orders_app.models import OrderStatus
from orders_app.orders.service import NEXT_STATUSES

from support.client import place_order
from support.database import blocked_by
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL

# How to reach each status from PENDING.
PATH_TO = {
    "PENDING": [],
    "PAID": ["PAID"],
    "SHIPPED": ["PAID", "SHIPPED"],
    "CANCELED": ["CANCELED"],
}
LEGAL = {("PENDING", "PAID"), ("PENDING", "CANCELED"), ("PAID", "SHIPPED"), ("PAID", "CANCELED")}


def patch(client, headers, order_id, status, **extra_headers):
    return client.patch(f"/orders/{order_id}/", json={"status": status}, headers={**headers, **extra_headers})


def order_in(client, headers, status):
    order = place_order(client, headers)
    for step in PATH_TO[status]:
        assert patch(client, headers, order["id"], step).status_code == 200
    return order


def test_the_service_table_is_the_spec_table():
    assert {(a.name, b.name) for a, nexts in NEXT_STATUSES.items() for b in nexts} == LEGAL


@pytest.mark.parametrize("current", PATH_TO)
@pytest.mark.parametrize("requested", PATH_TO)
def test_every_transition(client, alice, current, requested):
    order = order_in(client, alice["headers"], current)
    response = patch(client, alice["headers"], order["id"], requested)
    if (current, requested) in LEGAL or current == requested:
        assert response.status_code == 200, response.json
        assert response.json["status"] == requested
    else:
        assert response.status_code == 409
        allowed = [s.name for s in NEXT_STATUSES[OrderStatus[current]]]
        assert f"from {current} to {requested}" in response.json["message"]
        assert all(name in response.json["message"] for name in allowed)
        after = client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json
        assert after["status"] == current


def test_a_transition_updates_updated_at(client, alice):
    order = place_order(client, alice["headers"])
    changed = patch(client, alice["headers"], order["id"], "PAID").json
    assert changed["updated_at"] > order["updated_at"]
    assert changed["created_at"] == order["created_at"]


def test_setting_the_current_status_again_changes_nothing(client, alice):
    order = place_order(client, alice["headers"])
    response = patch(client, alice["headers"], order["id"], "PENDING")
    assert response.status_code == 200
    assert response.json == order


@pytest.mark.parametrize("spelling", ["paid", "Paid", "pAiD"])
def test_status_input_is_case_insensitive(client, alice, spelling):
    order = place_order(client, alice["headers"])
    assert patch(client, alice["headers"], order["id"], spelling).json["status"] == "PAID"


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "status"),
        ({"status": "DONE"}, "status"),
        ({"status": ""}, "status"),
        ({"status": 1}, "status"),
        ({"status": None}, "status"),
        ({"status": "PAID", "x": 1}, "x"),
    ],
)
def test_invalid_bodies_are_422_and_change_nothing(client, alice, body, field):
    order = place_order(client, alice["headers"])
    response = client.patch(f"/orders/{order['id']}/", json=body, headers=alice["headers"])
    assert response.status_code == 422
    assert list(response.json["errors"]["json"]) == [field]
    assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json == order


def test_if_match_with_the_current_etag_applies(client, alice):
    order = place_order(client, alice["headers"])
    etag = client.get(f"/orders/{order['id']}/", headers=alice["headers"]).headers["ETag"]
    response = patch(client, alice["headers"], order["id"], "PAID", **{"If-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] != etag
    assert (
        response.headers["ETag"]
        == client.get(f"/orders/{order['id']}/", headers=alice["headers"]).headers["ETag"]
    )


def test_if_match_with_an_old_etag_is_412_and_changes_nothing(client, alice):
    order = place_order(client, alice["headers"])
    old_etag = client.get(f"/orders/{order['id']}/", headers=alice["headers"]).headers["ETag"]
    patch(client, alice["headers"], order["id"], "PAID")
    response = patch(client, alice["headers"], order["id"], "CANCELED", **{"If-Match": old_etag})
    assert response.status_code == 412
    assert response.json["code"] == 412
    assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json["status"] == "PAID"


def test_if_match_is_optional(client, alice):
    order = place_order(client, alice["headers"])
    assert patch(client, alice["headers"], order["id"], "PAID").status_code == 200


def test_another_users_order_is_404_and_unchanged(client, alice, bob):
    order = place_order(client, alice["headers"])
    assert patch(client, bob["headers"], order["id"], "CANCELED").status_code == 404
    assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json["status"] == "PENDING"


def test_admins_change_every_order(client, alice, admin):
    order = place_order(client, alice["headers"])
    assert patch(client, admin["headers"], order["id"], "PAID").json["status"] == "PAID"


@pytest.mark.parametrize("order_id", ["nope", str(uuid.uuid4())])
def test_unknown_orders_are_404(client, alice, order_id):
    assert patch(client, alice["headers"], order_id, "PAID").status_code == 404


def test_changing_needs_a_token(client, alice):
    order = place_order(client, alice["headers"])
    assert client.patch(f"/orders/{order['id']}/", json={"status": "PAID"}).status_code == 401


def test_a_patch_waits_for_the_row_lock_and_then_sees_the_new_state(app, client, alice):
    order = place_order(client, alice["headers"])
    engine = create_engine(TEST_DATABASE_URL)
    with ThreadPoolExecutor(1) as pool, engine.connect() as other:
        other.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": order["id"]})
        pending = pool.submit(patch, app.test_client(), alice["headers"], order["id"], "PAID")
        wait_for(lambda: blocked_by(other), message="the PATCH to wait for the row lock")
        assert not pending.done()
        other.execute(text("UPDATE orders SET status = 'CANCELED' WHERE id = :id"), {"id": order["id"]})
        other.commit()
        response = pending.result(timeout=10)
    engine.dispose()
    assert response.status_code == 409  # CANCELED -> PAID, decided on the committed state
    assert "from CANCELED to PAID" in response.json["message"]


def test_concurrent_conflicting_patches_never_both_apply(app, client, alice):
    orders = [order_in(client, alice["headers"], "PAID") for _ in range(5)]
    for order in orders:
        barrier = threading.Barrier(2)

        def send(status, order_id=order["id"], barrier=barrier):
            local = app.test_client()
            barrier.wait()
            return patch(local, alice["headers"], order_id, status).status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = sorted(pool.map(send, ["SHIPPED", "CANCELED"]))
        assert statuses == [200, 409]  # SHIPPED and CANCELED are both final
