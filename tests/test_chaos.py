"""Chaos: a steady stream of orders while every process is killed and restarted, Redis loses its
jobs and PostgreSQL's connections are cut. Afterwards every order is processed exactly once, no
answer was a 500, and no Idempotency-Key made two orders.

Real processes, started one by one (not under honcho, which stops everything when one dies), all
reaching PostgreSQL through a TCP proxy that stands for the server.
"""

import collections
import os
import signal
import subprocess
import threading
import time
import uuid

from redis import Redis
from rq import Worker
from sqlalchemy import create_engine, func, select

from orders_app.models import IdempotencyKey, Order

from helpers import (
    CONSUMER,
    PASSWORD,
    RELAY,
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    WORKER,
    TcpProxy,
    free_port,
    kill_hard,
    start_process,
    wait_for,
)
from test_pipeline import Stack

WEB = ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
# One round takes about 12 s; CHAOS_ROUNDS=8 makes a soak of about 100 s (`pytest -s` prints a summary).
ROUNDS = int(os.environ.get("CHAOS_ROUNDS", "1"))
ITEMS = [{"name": "Chaos", "quantity": 1, "price": "1.00"}]


class Processes:
    """The service's processes, each restartable, each writing to a log of its own."""

    def __init__(self, tmp_path, settings):
        self.tmp_path, self.settings = tmp_path, settings
        self.running, self.logs = {}, collections.defaultdict(list)

    def start(self, name, command):
        log = self.tmp_path / f"{name}-{len(self.logs[name])}.log"
        self.logs[name].append(log)
        self.running[name] = start_process(command, stdout=log.open("w"), **self.settings)

    def kill(self, name):
        kill_hard(self.running.pop(name))

    def output(self, name):
        return "".join(log.read_text() for log in self.logs[name])

    def stop_all(self):
        for process in self.running.values():
            process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_hard(process)


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


def test_every_order_is_processed_exactly_once_through_chaos(database, broker, tmp_path):
    database_proxy = TcpProxy(TEST_DATABASE_URL).start()
    port = free_port()
    settings = {
        "DATABASE_URL": database_proxy.url,
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": "2",
        "PROCESSING_DELAY_SECONDS": "0.1",  # slower than orders arrive: jobs queue up in Redis
        "FLASK_RATELIMIT_ENABLED": "false",
        "FLASK_PASSWORD_HASH_TIME_COST": "1",
        "FLASK_PASSWORD_HASH_MEMORY_COST": "1024",
        "FLASK_RELAY_SWEEP_SECONDS": "0.5",
        "FLASK_RECONCILE_AFTER_SECONDS": "3",
        "FLASK_RECONCILE_INTERVAL_SECONDS": "1",
        "FLASK_JOB_TIMEOUT_SECONDS": "5",
        "FLASK_JOB_ABANDONED_GRACE_SECONDS": "1",
        "FLASK_JOB_RETRY_INTERVALS": "[1, 1, 1]",
        "FLASK_RECONNECT_MAX_SECONDS": "1",
    }
    processes = Processes(tmp_path, settings)
    commands = {"web": WEB, "relay": RELAY, "consumer": CONSUMER, "worker": WORKER}
    stack = Stack(f"http://127.0.0.1:{port}", {})
    rq_redis = Redis.from_url(TEST_REDIS_URL)
    customers = []
    try:
        for name, command in commands.items():
            processes.start(name, command)
        wait_for(stack.ready, timeout=30, message="the web server")
        wait_for(lambda: Worker.all(connection=rq_redis), message="the worker")
        assert (
            stack.call("POST", "/register/", {"email": "chaos@example.com", "password": PASSWORD})[0] == 201
        )
        _, tokens = stack.call("POST", "/token", form={"username": "chaos@example.com", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        customers = [Customer(stack, headers, rate=6) for _ in range(2)]
        for customer in customers:
            customer.thread.start()

        def orders_so_far():
            return sum(len(customer.created) for customer in customers)

        def after_more_orders(count=10):
            target = orders_so_far() + count
            wait_for(lambda: orders_so_far() >= target, timeout=30, message=f"{target} orders")

        for _ in range(ROUNDS):
            for name in ("relay", "consumer", "worker", "web"):
                after_more_orders()
                processes.kill(name)  # SIGKILL, at whatever point it was
                processes.start(name, commands[name])
            wait_for(stack.ready, timeout=30, message="the web server again")
            after_more_orders()
            wait_for(lambda: rq_redis.llen("rq:queue:orders") > 0, message="jobs queued in Redis")
            rq_redis.flushdb()  # Redis restarted empty: the queued jobs are gone
            after_more_orders()
            database_proxy.reset()  # PostgreSQL's connections cut mid-flight...
            database_proxy.stop()  # ...and the server unreachable for a moment
            time.sleep(1)  # the outage itself: not a condition to wait for
            database_proxy.start()  # nothing is restarted after this
            after_more_orders()
    finally:
        for customer in customers:
            customer.stopping.set()
        for customer in customers:
            customer.thread.join(timeout=60)

    try:
        created = {key: order for customer in customers for key, order in customer.created.items()}
        engine = create_engine(TEST_DATABASE_URL)

        def unprocessed():
            with engine.connect() as connection:
                return connection.scalar(
                    select(func.count()).select_from(Order).where(Order.processed_at.is_(None))
                )

        wait_for(lambda: unprocessed() == 0, timeout=60, message="every order processed")
        with engine.connect() as connection:
            orders = connection.scalar(select(func.count()).select_from(Order))
            keys = connection.scalar(select(func.count()).select_from(IdempotencyKey))
        engine.dispose()
        worker_output = processes.output("worker")
    finally:
        processes.stop_all()
        database_proxy.stop()

    statuses = sum((customer.statuses for customer in customers), collections.Counter())
    assert 500 not in statuses, statuses
    assert set(statuses) <= {201, 503}, statuses
    assert orders == keys == len(created), "an Idempotency-Key made two orders, or an order has no key"
    for order_id in created.values():  # processed_at is set once; a kill may eat the line
        assert worker_output.count(f"Order {order_id} processed") <= 1, order_id
    print(f"\nchaos: {ROUNDS} rounds, {len(created)} orders, all processed; answers {dict(statuses)}")
