"""Promises of the README that had no test of their own: the order counter excludes replays,
``orders_rq_jobs`` counts started, scheduled and failed jobs (the failed-jobs alert reads it),
``flask reconcile`` repairs once and says so, a process whose metrics port is taken works on
unmeasured.
(A POST cut mid-statement: ``test_database_outages``.)"""

import re
import socket
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, func, select

from orders_app.extensions import db
from orders_app.job_queue import PROCESS_ORDER, enqueue_process_order
from orders_app.reconciler import ADVISORY_LOCK_KEY

from support.broker import event_for, publish
from support.client import place_order
from support.commands import CONSUMER, WORKER
from support.network import free_port
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL, TEST_REDIS_URL, make_app

pytest_plugins = ["support.processes"]

ITEMS = [{"name": "Bread", "quantity": 1, "price": "1.00"}]


def rq_queue():
    return Queue("orders", connection=Redis.from_url(TEST_REDIS_URL), serializer=JSONSerializer)


def test_orders_created_total_counts_an_order_once_whatever_its_replays(client, alice):
    before = REGISTRY.get_sample_value("orders_created_total")
    headers = {**alice["headers"], "Idempotency-Key": "one-order"}
    answers = [client.post("/orders/", json={"items": ITEMS}, headers=headers) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [201, 201, 201]
    assert [answer.headers.get("Idempotent-Replayed") for answer in answers[1:]] == ["true", "true"]
    assert REGISTRY.get_sample_value("orders_created_total") == before + 1


@pytest.mark.system
def test_orders_rq_jobs_counts_started_scheduled_and_failed_jobs(app, client, alice, processes):
    queue = rq_queue()

    def job():
        return enqueue_process_order(
            app.config, queue.connection, place_order(client, alice["headers"])["id"], None
        )

    running = job()
    processes.start("worker", WORKER, PROCESSING_DELAY_SECONDS="30")
    wait_for(lambda: f"Processing order {running.args[0]}" in processes.current_log("worker"), timeout=30)
    job(), job()  # waiting behind the running one
    for failed in (job(), job(), job(), job()):
        queue.remove(failed)
        queue.failed_job_registry.add(failed, ttl=300, exc_string="boom")
    for _ in range(3):
        queue.enqueue_in(timedelta(minutes=5), PROCESS_ORDER, "later")
    response = client.get("/metrics")
    samples = {
        sample.labels["state"]: sample.value
        for family in text_string_to_metric_families(response.text)
        if family.name == "orders_rq_jobs"
        for sample in family.samples
    }
    assert samples == {"queued": 2, "started": 1, "scheduled": 3, "failed": 4}


def test_flask_reconcile_repairs_once_says_so_and_waits_its_turn(database, client, alice):
    app = make_app(RECONCILE_AFTER_SECONDS=0)
    order = place_order(client, alice["headers"])  # no job: nothing consumed its event
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reconcile"])
    assert result.exit_code == 0
    assert f"Reconciled order {order['id']}" in result.output  # logged
    assert result.output.endswith("Gave 1 orders their job again\n")
    assert rq_queue().job_ids == [f"process-order-{order['id']}"]
    assert runner.invoke(args=["reconcile"]).output.endswith("Gave 0 orders their job again\n")
    engine = create_engine(TEST_DATABASE_URL)
    with engine.connect() as other:
        other.execute(select(func.pg_advisory_lock(ADVISORY_LOCK_KEY)))  # a relay reconciling now
        busy = runner.invoke(args=["reconcile"])
        other.execute(select(func.pg_advisory_unlock(ADVISORY_LOCK_KEY)))
    engine.dispose()
    assert busy.exit_code == 1
    assert "Another process is reconciling right now; try again shortly" in busy.output
    with app.app_context():
        db.engine.dispose()


@pytest.mark.system
def test_a_process_whose_metrics_port_is_taken_works_on_unmeasured(
    client, alice, broker, topology, processes
):
    port = free_port()
    with socket.create_server(("0.0.0.0", port)):  # whoever has it: another process, a second replica
        consumer = processes.start("consumer", CONSUMER, FLASK_METRICS_PORT=str(port))
        wait_for(
            lambda: "Consuming queue" in processes.current_log("consumer"), timeout=30, message="the consumer"
        )
        order = place_order(client, alice["headers"])
        publish(broker, topology, event_for(order))
        wait_for(lambda: rq_queue().job_ids, message="its job enqueued")
    assert re.search(rf"Cannot serve metrics on [\d.]+:{port} ", processes.current_log("consumer"))
    assert consumer.poll() is None
    assert processes.stop_all() == {"consumer": 0}
