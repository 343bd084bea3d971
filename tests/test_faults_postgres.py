"""A real PostgreSQL restart (``pg_ctl`` on a private cluster): the server ends every session
(57P01), and refuses connections while it is down or starting (57P03). The first request after a
restart succeeds (the pool discards the stale connection); while the server is down the web
answers 503 with Retry-After, never 500; the relay, consumer and worker go on, and every order is
processed."""

import threading
import uuid

import pytest
from sqlalchemy import create_engine, func, select

from orders_app.config import psycopg2_url
from orders_app.extensions import db
from orders_app.models import Order

from support.client import bearer, login, register
from support.commands import CONSUMER, RELAY, WORKER
from support.database import unpublished
from support.polling import wait_for
from support.settings import make_app

pytestmark = pytest.mark.system

pytest_plugins = ["support.servers", "support.processes"]

ITEMS = [{"name": "Bread", "quantity": 1, "price": "1.00"}]


class Customer:
    """Places orders one after another, each retried with its Idempotency-Key until a 201."""

    def __init__(self, client, headers):
        self.client, self.headers = client, headers
        self.answers, self.created = [], {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.is_set():
            key = uuid.uuid4().hex
            while True:
                response = self.client.post(
                    "/orders/", json={"items": ITEMS}, headers={**self.headers, "Idempotency-Key": key}
                )
                self.answers.append(
                    (response.status_code, response.headers.get("Retry-After"), response.json)
                )
                if response.status_code == 201:
                    self.created[key] = response.json["id"]
                    break


def test_a_postgresql_restart_answers_503_then_succeeds_and_the_pipeline_goes_on(
    private_postgres, broker, processes
):
    url = private_postgres.url
    settings = {
        "DATABASE_URL": url,
        "FLASK_RECONCILE_AFTER_SECONDS": "3600",
        "FLASK_RECONNECT_MAX_SECONDS": "1",
    }
    for name, command in (("relay", RELAY), ("consumer", CONSUMER), ("worker", WORKER)):
        processes.start(name, command, **settings)
    web = make_app(SQLALCHEMY_DATABASE_URI=psycopg2_url(url), RATELIMIT_ENABLED=False)
    client = web.test_client()
    register(client, "pg@example.com")
    headers = bearer(login(client, "pg@example.com")["access_token"])
    customer = Customer(client, headers)
    customer.thread.start()
    try:
        wait_for(lambda: len(customer.created) >= 5, message="orders before the restart")
    finally:
        customer.stopping.set()
        customer.thread.join(timeout=30)
    private_postgres.pg_ctl("restart")  # -m fast: the pool's idle sessions terminated (57P01)
    first = client.post("/orders/", json={"items": ITEMS}, headers=headers)
    assert first.status_code == 201, first.json  # the stale connection discarded, not lent
    created = {**customer.created, "first": first.json["id"]}

    customer = Customer(client, headers)
    customer.thread.start()
    try:
        private_postgres.pg_ctl("stop")  # while requests come in
        wait_for(lambda: any(status == 503 for status, _, _ in customer.answers), message="a 503")
        private_postgres.pg_ctl("start")
        wait_for(lambda: len(customer.created) >= 5, timeout=30, message="orders after the restart")
    finally:
        customer.stopping.set()
        customer.thread.join(timeout=30)
    created.update(customer.created)
    statuses = [status for status, _, _ in customer.answers]
    assert set(statuses) <= {201, 503}, statuses
    refusals = [(retry_after, body) for status, retry_after, body in customer.answers if status == 503]
    assert all(retry_after and body["status"] == "Service Unavailable" for retry_after, body in refusals)
    engine = create_engine(psycopg2_url(url))
    try:

        def unprocessed():
            with engine.connect() as connection:
                return connection.scalar(
                    select(func.count()).select_from(Order).where(Order.processed_at.is_(None))
                )

        wait_for(
            lambda: unprocessed() == 0 and unpublished(web) == 0, timeout=60, message="every order processed"
        )
        with engine.connect() as connection:
            assert set(map(str, connection.scalars(select(Order.id)))) == set(created.values())
    finally:
        engine.dispose()
        with web.app_context():
            db.engine.dispose()
    assert all(process.poll() is None for process in processes.running.values()), "a process exited"
    assert "Reconciled" not in processes.current_log("relay")
