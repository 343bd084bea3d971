"""PostgreSQL going away and coming back, through a TCP proxy standing for it.

While it is unreachable requests answer 503 with Retry-After, never 500; once it is back the first
requests succeed; the relay and a real worker recover by themselves, without a restart.
"""

import json
import threading
import uuid

import pytest
from redis import Redis
from sqlalchemy import create_engine, func, select, text

from orders_app.events.relay import Relay
from orders_app.extensions import db
from orders_app.job_queue import enqueue_process_order
from orders_app.models import Order

from support.broker import drain, ready_count
from support.client import place_order
from support.commands import WORKER, running, start_process
from support.database import blocked_by
from support.network import TcpProxy
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL, TEST_REDIS_URL, make_app

ITEMS = [{"name": "Bread", "quantity": 1, "price": "1.00"}]


@pytest.fixture
def database_proxy(database):
    proxy = TcpProxy(TEST_DATABASE_URL).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def proxied_app(database_proxy):
    """An app reaching PostgreSQL through the proxy. Rate limiting is off: its headers would stretch
    Retry-After to the end of the limit's window (test_rate_limits covers that)."""
    app = make_app(SQLALCHEMY_DATABASE_URI=database_proxy.url, RATELIMIT_ENABLED=False)
    yield app
    with app.app_context():
        db.engine.dispose()


def assert_unavailable(response):
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"] == "2"
    assert response.json == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "The database is unavailable; retry shortly",
    }


def test_every_route_answers_503_while_the_database_is_unreachable(proxied_app, alice, database_proxy):
    web = proxied_app.test_client()
    order = place_order(web, alice["headers"])
    assert web.get(f"/orders/{order['id']}/", headers=alice["headers"]).headers["X-Cache"] == "MISS"
    database_proxy.stop()
    headers, user_id = alice["headers"], alice["user"]["id"]
    new_user = {"email": "new@example.com", "password": "long enough password"}
    for response in (
        web.post("/register/", json=new_user),
        web.post("/token", data={"username": "alice@example.com", "password": "whatever it is"}),
        web.get("/users/me", headers=headers),
        web.post("/orders/", json={"items": ITEMS}, headers=headers),
        web.post("/orders/", json={"items": ITEMS}, headers={**headers, "Idempotency-Key": "k-1"}),
        web.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=headers),
        web.get(f"/orders/user/{user_id}/", headers=headers),
    ):
        assert_unavailable(response)
    cached = web.get(f"/orders/{order['id']}/", headers=headers)
    assert (cached.status_code, cached.headers["X-Cache"]) == (200, "HIT")
    assert cached.json == order


def test_requests_succeed_at_once_after_the_database_restarts(proxied_app, alice, database_proxy):
    web = proxied_app.test_client()
    place_order(web, alice["headers"])  # the pool now holds connections
    database_proxy.reset()  # PostgreSQL restarted: every pooled connection is dead
    for _ in range(3):
        place_order(web, alice["headers"])
    database_proxy.stop()
    assert_unavailable(web.post("/orders/", json={"items": ITEMS}, headers=alice["headers"]))
    database_proxy.start()
    place_order(web, alice["headers"])


def test_a_connection_reset_mid_request_answers_503(proxied_app, alice, database_proxy):
    web = proxied_app.test_client()
    order = place_order(web, alice["headers"])
    responses = []
    engine = create_engine(TEST_DATABASE_URL)
    with engine.connect() as other, other.begin():
        other.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": order["id"]})
        request = threading.Thread(
            target=lambda: responses.append(
                web.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=alice["headers"])
            )
        )
        request.start()
        wait_for(lambda: blocked_by(other), message="the PATCH waiting on the row lock")
        database_proxy.reset()
        request.join(timeout=10)
    engine.dispose()
    assert_unavailable(responses[0])
    # Nothing was changed, and the next request goes through.
    assert web.get(f"/orders/{order['id']}/", headers=alice["headers"]).json["status"] == "PENDING"
    assert (
        web.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=alice["headers"]).status_code
        == 200
    )


def test_a_post_cut_mid_statement_answers_503_and_creates_nothing(proxied_app, alice, database_proxy):
    web = proxied_app.test_client()
    first = place_order(web, alice["headers"])
    headers = {**alice["headers"], "Idempotency-Key": "cut"}
    responses = []
    engine = create_engine(TEST_DATABASE_URL)
    with engine.connect() as other, other.begin():  # the same key, uncommitted: the POST waits on it
        other.execute(
            text(
                "INSERT INTO idempotency_keys (user_id, key, request_hash, order_id) "
                "VALUES (:u, 'cut', '', :o)"
            ),
            {"u": alice["user"]["id"], "o": first["id"]},
        )
        request = threading.Thread(
            target=lambda: responses.append(web.post("/orders/", json={"items": ITEMS}, headers=headers))
        )
        request.start()
        wait_for(lambda: blocked_by(other), message="the POST waiting on the key's lock")
        database_proxy.reset()
        request.join(timeout=10)
        other.rollback()
    assert_unavailable(responses[0])
    # Nothing was created, and the retry with the same key creates the one order.
    with engine.connect() as connection:
        assert connection.scalars(select(Order.id)).all() == [uuid.UUID(first["id"])]
        retried = web.post("/orders/", json={"items": ITEMS}, headers=headers)
        assert retried.status_code == 201, retried.json
        assert connection.scalar(select(func.count()).select_from(Order)) == 2
    engine.dispose()


def test_the_relay_recovers_from_a_database_restart(
    database, database_proxy, alice, client, broker, topology
):
    with running(Relay, SQLALCHEMY_DATABASE_URI=database_proxy.url, RELAY_SWEEP_SECONDS=0.2):
        place_order(client, alice["headers"])
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the first event")
        database_proxy.stop()
        second = place_order(client, alice["headers"])  # committed while the relay cannot reach PostgreSQL
        database_proxy.start()
        published = set()  # the first event may come again: its mark can be lost with the connection

        def second_published():
            published.update(json.loads(body)["order_id"] for _, body in drain(broker, topology.queue))
            return second["id"] in published

        wait_for(second_published, message="the event after the restart")


@pytest.mark.system
def test_a_worker_recovers_from_a_database_restart_mid_job(database_proxy, alice, client):
    app, rq_redis = make_app(JOB_RETRY_INTERVALS=[1, 1, 1]), Redis.from_url(TEST_REDIS_URL)
    first, second = place_order(client, alice["headers"]), place_order(client, alice["headers"])
    worker = start_process(WORKER, DATABASE_URL=database_proxy.url)
    engine = create_engine(TEST_DATABASE_URL)
    try:
        with engine.connect() as other:
            with other.begin():  # the worker's UPDATE of the first order waits on this row lock
                other.execute(text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": first["id"]})
                enqueue_process_order(app.config, rq_redis, first["id"], None)
                wait_for(lambda: blocked_by(other), message="the job waiting on the row lock")
                database_proxy.stop()  # PostgreSQL restarts mid-job, mid-transaction
            database_proxy.start()
        enqueue_process_order(app.config, rq_redis, second["id"], None)
        wait_for(
            lambda: processed(app, first["id"]) and processed(app, second["id"]), message="both processed"
        )
    finally:
        engine.dispose()
        worker.terminate()
        worker.wait(timeout=20)


def processed(app, order_id):
    with app.app_context():
        try:
            return db.session.scalar(select(Order.processed_at).where(Order.id == order_id))
        finally:
            db.session.remove()
