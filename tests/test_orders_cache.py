"""The order cache under concurrent writers: whatever order their writes reach Redis in, the
newest committed state stays cached."""

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

from sqlalchemy import create_engine, func, select, text

from orders_app.auth.identity import Viewer
from orders_app.extensions import db
from orders_app.models import Order, OrderStatus
from orders_app.orders import cache
from orders_app.orders.schemas import order_data
from orders_app.orders.service import change_status, mark_processed

from support.client import place_order
from support.database import blocked_by
from support.network import TcpProxy
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL, TEST_REDIS_URL, make_app


def read(client, headers, order):
    response = client.get(f"/orders/{order['id']}/", headers=headers)
    assert response.status_code == 200
    return response


def test_a_write_through_arriving_after_a_newer_one_is_ignored(app, client, alice):
    """A PATCH commits; before its write-through reaches Redis, the worker processes the order,
    commits and caches that. The PATCH's late write must not bring back ``processed_at: null``."""
    order = place_order(client, alice["headers"])
    order_id = uuid.UUID(order["id"])
    proxy = TcpProxy(TEST_REDIS_URL).start()  # the PATCH's Redis, held at will
    patching = make_app(REDIS_URL=proxy.url, RATELIMIT_ENABLED=False).test_client()
    engine = create_engine(TEST_DATABASE_URL)
    with ThreadPoolExecutor(1) as pool, engine.connect() as other:
        other.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": order["id"]})
        pending = pool.submit(
            patching.patch, f"/orders/{order_id}/", json={"status": "PAID"}, headers=alice["headers"]
        )
        wait_for(lambda: blocked_by(other), message="the PATCH to wait for the row lock")
        proxy.hold()
        other.commit()  # the PATCH takes the lock, commits, and its write-through is held
        wait_for(lambda: status_of(other, order_id) == "PAID", message="the PATCH to commit")
        with app.app_context():
            processed, _ = mark_processed(order_id)  # the worker: commits and caches its state
        proxy.release()
        patched = pending.result(timeout=10)
    engine.dispose()
    proxy.stop()

    assert patched.status_code == 200
    assert patched.json["processed_at"] is None  # the PATCH's own state: older than the worker's
    cached = read(client, alice["headers"], order)
    assert cached.headers["X-Cache"] == "HIT"
    assert cached.json["status"] == "PAID"
    assert cached.json["processed_at"] == processed["processed_at"]


def test_a_change_in_a_transaction_begun_earlier_still_gets_a_newer_version(app, client, alice):
    """A PATCH whose transaction began (e.g. with its user lookup) before the worker's, but which
    took the row lock after the worker committed: its state is the newer one, and so is its
    ``updated_at``, so its write-through replaces the worker's."""
    order = place_order(client, alice["headers"])
    order_id = uuid.UUID(order["id"])
    viewer = Viewer(user_id=alice["user"]["id"])
    with app.app_context():
        db.session.scalar(select(func.now()))  # this transaction begins now
        worker = threading.Thread(target=run_in_app_context, args=(app, mark_processed, order_id))
        worker.start()
        worker.join(timeout=10)
        processed_at = db.session.scalar(select(Order.processed_at).where(Order.id == order_id))
        assert processed_at is not None  # committed by the worker, seen by this transaction
        changed = change_status(viewer, order_id, OrderStatus.PAID)
        assert datetime.fromisoformat(changed["updated_at"]) > processed_at

    cached = read(client, alice["headers"], order)
    assert cached.headers["X-Cache"] == "HIT"
    assert (cached.json["status"], cached.json["processed_at"]) == ("PAID", processed_at.isoformat())


def test_filling_after_a_miss_never_overwrites_a_newer_cached_state(app, client, alice):
    order = place_order(client, alice["headers"])
    with app.app_context():
        before = db.session.get(Order, uuid.UUID(order["id"]))  # a slow reader's row
        assert (
            client.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=alice["headers"]).json[
                "status"
            ]
            == "PAID"
        )  # a PATCH commits and writes PAID through
        cache.store(order_data(before))  # then the reader caches what it read before
    assert read(client, alice["headers"], order).json["status"] == "PAID"


def test_each_change_moves_the_cached_version_forward(app, client, alice):
    order = place_order(client, alice["headers"])
    key = cache.key(order["id"])
    versions = []
    with app.app_context():
        redis = app.extensions["cache_redis"]
        read(client, alice["headers"], order)
        versions.append(int(redis.hget(key, "version")))
        client.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=alice["headers"])
        versions.append(int(redis.hget(key, "version")))
        mark_processed(uuid.UUID(order["id"]))
        versions.append(int(redis.hget(key, "version")))
        assert 295 <= redis.ttl(key) <= 300
    assert versions == sorted(set(versions))


def run_in_app_context(app, function, *args):
    with app.app_context():
        function(*args)
        db.session.remove()


def status_of(connection, order_id):
    return connection.scalar(text("SELECT status FROM orders WHERE id = :id"), {"id": order_id})
