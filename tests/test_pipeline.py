"""The event pipeline end to end: the real processes (gunicorn web, relay, consumer, RQ worker) on the test
database, Redis db and RabbitMQ names; an order goes in over HTTP and comes out processed."""

import pytest

from support.polling import wait_for
from support.stack import running_stack, signed_in

pytestmark = pytest.mark.system


@pytest.fixture
def stack(database, broker, tmp_path):
    with running_stack(tmp_path) as stack:
        yield stack


def test_an_order_posted_over_http_is_processed_by_the_pipeline(stack):
    auth = {**signed_in(stack, "e2e@example.com"), "X-Request-ID": "e2e-request-1"}
    items = [{"name": "Tea", "quantity": 3, "price": "2.50"}]
    status, order = stack.call("POST", "/orders/", {"items": items}, headers=auth)
    assert status == 201
    assert order["processed_at"] is None

    def processed():
        return stack.call("GET", f"/orders/{order['id']}/", headers=auth)[1]["processed_at"]

    wait_for(processed, timeout=20, message="processed_at")
    assert f"Order {order['id']} processed" in stack.log("worker")
    for stage in ("relay", "consumer", "worker"):  # every stage logs the order and its request
        lines = [
            line for line in stack.log(stage).splitlines() if order["id"] in line and "e2e-request-1" in line
        ]
        assert lines, f"{stage} logged nothing about order {order['id']} with its request id"
