"""Chaos: a steady stream of orders while two replicas of every process run and, round after round,
one replica of each is killed, RabbitMQ's connections are cut and RabbitMQ is restarted (a private
node), Redis loses its jobs and PostgreSQL's connections are cut. Afterwards the pipeline, not the
reconciler, is shown to have done the work:

- every answered order is in the database under the Idempotency-Key the client sent, and no other;
- every outbox event was published; every order was processed, and printed at most once;
- the reconciler repaired only orders whose job a fault destroyed (queued or scheduled in Redis
  when it was flushed, started or taken when a worker was killed, or failed by a cut), and every job
  the flush destroyed that no redelivered event brought back (a consumer cut off before its ack
  gets the event again and, the job gone, enqueues it anew); each repair is logged, and counted by
  the relay that made it.

Its grace (20 s) is far longer than the pipeline takes, a broker restart on two busy cores
included, so a consumer that never comes back or a relay that stops publishing leaves orders the
reconciler repairs outside that set: the test fails.

Real processes, started one by one (not under `make run`, whose runner stops everything when one dies),
reaching PostgreSQL, and a RabbitMQ node of the test's own, through TCP proxies.
"""

import collections
import os
import re
import signal
import threading
import time
import uuid

import pytest
from redis import Redis
from rq import Worker
from sqlalchemy import create_engine, func, select

from orders_app.models import IdempotencyKey, Order, OutboxEvent

from support.client import Stack
from support.commands import CONSUMER, RELAY, WORKER
from support.metrics import metric
from support.network import TcpProxy, free_port
from support.polling import wait_for
from support.settings import PASSWORD, TEST_DATABASE_URL, TEST_REDIS_URL

pytestmark = pytest.mark.system

pytest_plugins = ["support.processes", "support.servers"]

WEB = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
REPLICAS = 2
# One round takes about 35 s, each more about 15 s: CHAOS_ROUNDS=8 is a soak of about 2.5 minutes
# (`pytest -s` prints a summary).
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))
ITEMS = [{"name": "Chaos", "quantity": 1, "price": "1.00"}]
JOB_ID = re.compile(r"process-order-([0-9a-f-]{36})")
FAILED_JOB = re.compile(r"job process-order-([0-9a-f-]{36}): exception raised while executing")
# Where a worker moves the job it takes until it starts it (RQ's intermediate queue), and the
# registry of the jobs started.
TAKEN, STARTED = "rq:queue:orders:intermediate", "rq:wip:orders"
REPAIR = re.compile(r"Reconciled order ([0-9a-f-]{36})")
ENQUEUED = re.compile(r"Enqueued processing of order ([0-9a-f-]{36})")


class Customer:
    """Places orders at a steady rate; retries each with the same Idempotency-Key until a 201."""

    def __init__(self, stack, headers, rate):
        self.stack, self.headers, self.interval = stack, headers, 1 / rate
        self.created, self.statuses, self.errors = {}, collections.Counter(), collections.Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stopping.wait(self.interval):
            key = uuid.uuid4().hex
            while True:
                try:
                    status, body = self.stack.call(
                        "POST", "/orders/", {"items": ITEMS}, headers={**self.headers, "Idempotency-Key": key}
                    )
                except OSError as error:  # refused or reset while the web server restarts
                    self.errors[type(error).__name__] += 1
                    time.sleep(0.1)
                    continue
                self.statuses[status] += 1
                if status == 201:
                    self.created[key] = body["id"]
                    break
                time.sleep(0.1)  # 503 (or anything else): retry with the same key


def order_ids(pattern, text):
    return set(pattern.findall(text))


def flush_redis(rq_redis):
    """Redis restarted empty: its queued and scheduled jobs are gone. Returns their orders, read in
    the same transaction as the flush (no worker takes one in between), and the orders of the jobs
    a worker had just taken and not yet started (each either runs or is lost with its data)."""
    with rq_redis.pipeline(transaction=True) as pipeline:
        pipeline.lrange("rq:queue:orders", 0, -1)
        pipeline.zrange("rq:scheduled:orders", 0, -1)
        pipeline.lrange(TAKEN, 0, -1)
        queued, scheduled, taken, _ = pipeline.flushdb().execute()
    lost = order_ids(JOB_ID, b" ".join(queued + scheduled).decode())
    return lost, order_ids(JOB_ID, b" ".join(taken).decode())


def kill_worker(processes, name, rq_redis):
    """SIGKILL a worker; return the orders whose job it was running or had just taken, or the other
    worker had (after a flush RQ no longer lists the workers: which is which cannot be told).
    Paused first (SIGSTOP), so that what is read is what it dies with."""
    process = processes.running[name]
    os.killpg(process.pid, signal.SIGSTOP)
    running = rq_redis.zrange(STARTED, 0, -1) + rq_redis.lrange(TAKEN, 0, -1)
    processes.kill(name)
    return order_ids(JOB_ID, b" ".join(running).decode())


def test_every_order_is_processed_exactly_once_through_chaos(database, private_rabbitmq, processes):
    database_proxy = TcpProxy(TEST_DATABASE_URL).start()
    broker_proxy = TcpProxy(private_rabbitmq.url).start()
    settings = {
        "DATABASE_URL": database_proxy.url,
        "RABBITMQ_URL": broker_proxy.url,
        "WEB_CONCURRENCY": "1",
        "PROCESSING_DELAY_SECONDS": "0.1",  # slower than orders arrive: jobs queue up in Redis
        "FLASK_RATELIMIT_ENABLED": "false",
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "FLASK_RELAY_SWEEP_SECONDS": "0.5",
        "FLASK_RECONCILE_AFTER_SECONDS": "20",
        "FLASK_RECONCILE_INTERVAL_SECONDS": "1",
        "FLASK_JOB_TIMEOUT_SECONDS": "5",
        "FLASK_JOB_ABANDONED_GRACE_SECONDS": "1",
        "FLASK_JOB_RETRY_INTERVALS": "[1, 1, 1]",
        "FLASK_RECONNECT_MAX_SECONDS": "1",
    }
    web_ports = [free_port() for _ in range(REPLICAS)]
    relay_metrics = [free_port() for _ in range(REPLICAS)]
    for replica in range(REPLICAS):
        processes.start(f"web-{replica}", WEB, GUNICORN_BIND=f"127.0.0.1:{web_ports[replica]}", **settings)
        processes.start(f"relay-{replica}", RELAY, FLASK_METRICS_PORT=str(relay_metrics[replica]), **settings)
        processes.start(f"consumer-{replica}", CONSUMER, **settings)
        processes.start(f"worker-{replica}", WORKER, **settings)
    stacks = [Stack(f"http://127.0.0.1:{port}", {}) for port in web_ports]
    rq_redis = Redis.from_url(TEST_REDIS_URL)
    engine = create_engine(TEST_DATABASE_URL)
    customers, destroyed, flushed = [], set(), set()
    try:
        for stack in stacks:
            wait_for(stack.ready, timeout=60, message="the web servers")
        wait_for(lambda: len(Worker.all(connection=rq_redis)) == REPLICAS, timeout=30, message="the workers")
        stack = stacks[0]
        assert (
            stack.call("POST", "/register/", {"email": "chaos@example.com", "password": PASSWORD})[0] == 201
        )
        _, tokens = stack.call("POST", "/token", form={"username": "chaos@example.com", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        customers = [Customer(stack, headers, rate=6) for stack in stacks]
        for customer in customers:
            customer.thread.start()

        def orders_so_far():
            return sum(len(customer.created) for customer in customers)

        def after_more_orders(count=10):
            target = orders_so_far() + count
            wait_for(lambda: orders_so_far() >= target, timeout=60, message=f"{target} orders")

        for round_ in range(ROUNDS):
            replica = round_ % REPLICAS  # the other replica of each goes on meanwhile
            for name in ("relay", "consumer", "worker", "web"):
                after_more_orders()
                if name == "worker":
                    destroyed |= kill_worker(processes, f"worker-{replica}", rq_redis)
                else:
                    processes.kill(f"{name}-{replica}")  # SIGKILL, at whatever point it was
                processes.restart(f"{name}-{replica}")
            wait_for(stacks[replica].ready, timeout=60, message="the web server again")
            after_more_orders()
            broker_proxy.reset()  # RabbitMQ's connections cut: publishes in flight, unacked deliveries
            after_more_orders()
            private_rabbitmq.ctl("stop_app")  # RabbitMQ restarted: orders wait in the outbox meanwhile
            after_more_orders(5)
            private_rabbitmq.ctl("start_app")
            broker_proxy.stop()  # the proxy stops accepting once the broker refused it: open it again
            broker_proxy.start()
            after_more_orders()
            wait_for(lambda: rq_redis.llen("rq:queue:orders") > 0, timeout=30, message="jobs queued in Redis")
            lost, taken = flush_redis(rq_redis)
            flushed |= lost
            destroyed |= taken
            after_more_orders()
            database_proxy.reset()  # PostgreSQL's connections cut mid-flight...
            database_proxy.stop()  # ...and the server unreachable for a moment
            time.sleep(1)  # the outage itself: not a condition to wait for
            database_proxy.start()
            after_more_orders()
    finally:
        for customer in customers:
            customer.stopping.set()
        for customer in customers:
            customer.thread.join(timeout=60)

    def unfinished():
        with engine.connect() as connection:
            unprocessed = select(func.count()).select_from(Order).where(Order.processed_at.is_(None))
            unpublished = (
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
            )
            return connection.scalar(unprocessed) + connection.scalar(unpublished)

    wait_for(lambda: unfinished() == 0, timeout=90, message="every order processed, every event published")
    relays = [f"relay-{replica}" for replica in range(REPLICAS)]
    repairs_counted = {
        relay: metric(port, "orders_reconciled_total")
        for relay, port in zip(relays, relay_metrics, strict=True)
    }
    repairs_logged = {relay: len(REPAIR.findall(processes.current_log(relay))) for relay in relays}
    with engine.connect() as connection:
        keys = dict(connection.execute(select(IdempotencyKey.key, IdempotencyKey.order_id)).all())
        orders = set(connection.scalars(select(Order.id)))
        events = connection.scalars(select(OutboxEvent.payload["order_id"].astext)).all()
    engine.dispose()
    exit_codes = processes.stop_all()
    database_proxy.stop()
    broker_proxy.stop()

    created = {key: order for customer in customers for key, order in customer.created.items()}
    statuses = sum((customer.statuses for customer in customers), collections.Counter())
    assert 500 not in statuses, statuses
    assert set(statuses) <= {201, 503}, statuses
    assert {key: str(order) for key, order in keys.items()} == created, (
        "orders and keys the clients were not answered"
    )
    assert {str(order) for order in orders} == set(created.values())
    assert sorted(events) == sorted(created.values()), "an order without its one event"
    worker_output = processes.output("worker")
    for order_id in created.values():  # processed_at is set once; a kill may eat the line
        assert worker_output.count(f"Order {order_id} processed") <= 1, order_id

    relay_output = processes.output("relay")
    repaired = order_ids(REPAIR, relay_output)
    destroyed |= flushed | order_ids(FAILED_JOB, worker_output)
    assert repaired <= destroyed, f"repaired orders no fault touched: {repaired - destroyed}"
    enqueues = collections.Counter(ENQUEUED.findall(processes.output("consumer")))
    requeued = {order for order, count in enqueues.items() if count > 1}
    unrepaired = flushed - repaired - requeued
    assert not unrepaired, f"jobs lost in Redis's flush and never repaired: {unrepaired}"
    assert repairs_counted == repairs_logged
    assert set(exit_codes.values()) == {0}, exit_codes
    print(
        f"\nchaos: {ROUNDS} rounds, {len(created)} orders, all processed; {len(repaired)} repaired "
        f"({len(flushed)} flushed, {len(destroyed)} touched by a fault); answers {dict(statuses)}"
    )
