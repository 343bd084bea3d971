"""The order rules called directly, without HTTP."""

from decimal import Decimal

import pytest

from orders_app.auth.identity import Viewer
from orders_app.models import OrderStatus
from orders_app.orders import service

ITEMS = [
    {"name": "Bread", "quantity": 3, "price": Decimal("0.10")},
    {"name": "Jam", "quantity": 1, "price": Decimal("0.20")},
]


def test_totals_are_exact_decimals():
    assert service.order_total(ITEMS) == Decimal("0.50")  # 3 * 0.1 + 0.2 is not 0.5 in floats


def test_create_change_and_list_without_http(app, alice):
    owner = Viewer(alice["user"]["id"])
    with app.app_context():
        order, created = service.create_order(owner, ITEMS)
        assert created and order["total_price"] == "0.50"
        assert order["items"][0] == {"name": "Bread", "quantity": 3, "price": "0.10"}
        assert service.change_status(owner, order["id"], OrderStatus.PAID)["status"] == "PAID"
        with pytest.raises(service.IllegalTransition, match="allowed next states: SHIPPED, CANCELED"):
            service.change_status(owner, order["id"], OrderStatus.PENDING)
        page = service.list_orders(owner, owner.user_id, status=OrderStatus.PAID)
        assert [o["id"] for o in page.orders] == [order["id"]] and page.total == 1
        assert page.next_after is None


def test_strangers_get_not_found_and_forbidden_admins_get_through(app, alice):
    owner, stranger, admin = Viewer(alice["user"]["id"]), Viewer(999), Viewer(998, is_admin=True)
    with app.app_context():
        order, _ = service.create_order(owner, ITEMS)
        with pytest.raises(service.OrderNotFound):
            service.get_order(stranger, order["id"])
        with pytest.raises(service.ForeignOrders):
            service.list_orders(stranger, owner.user_id)
        assert service.get_order(admin, order["id"])[0]["id"] == order["id"]
