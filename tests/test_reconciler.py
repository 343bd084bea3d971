"""The reconciler: orders whose job a fault lost get it again, against real PostgreSQL and Redis."""

import logging
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY
from redis import Connection, Redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer
from sqlalchemy import create_engine, select, text

from orders_app import reconciler
from orders_app.cli import relay_with_periodic_tasks
from orders_app.extensions import db
from orders_app.job_queue import enqueue_process_order, job_id
from orders_app.models import Order
from orders_app.reconciler import ADVISORY_LOCK_KEY, reconcile

from support.broker import ready_count
from support.client import place_order
from support.commands import WORKER, kill_hard, running, start_process
from support.jobs import run_jobs
from support.network import closed_port_url
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL, TEST_REDIS_URL, make_app

# Every order counts as overdue at once: tests need not wait out the production grace period.
OVERDUE_AT_ONCE = {"RECONCILE_AFTER_SECONDS": 0, "JOB_RETRY_INTERVALS": [0, 0, 0]}


@pytest.fixture
def reconciler_app(database):
    return make_app(**OVERDUE_AT_ONCE)


def run_reconciler(app):
    with app.app_context():
        return reconcile()


def processed_at(app, order_id):
    with app.app_context():
        return db.session.scalar(select(Order.processed_at).where(Order.id == order_id))


def job_status(rq_redis, order_id):
    job = Job.fetch_many([job_id(order_id)], connection=rq_redis, serializer=JSONSerializer)[0]
    return job and job.get_status()


def test_an_order_whose_job_redis_lost_gets_it_again_and_is_processed(
    reconciler_app, client, alice, rq_redis, caplog
):
    order = place_order(client, alice["headers"])
    enqueue_process_order(reconciler_app.config, rq_redis, order["id"], "req-1")
    rq_redis.flushdb()  # Redis restarted empty: the queued job is gone
    repairs_before = REGISTRY.get_sample_value("orders_reconciled_total")
    with caplog.at_level(logging.WARNING, logger="orders_app.reconciler"):
        assert run_reconciler(reconciler_app) == 1
    assert f"Reconciled order {order['id']}" in caplog.text
    assert REGISTRY.get_sample_value("orders_reconciled_total") == repairs_before + 1
    assert job_status(rq_redis, order["id"]) == JobStatus.QUEUED
    run_jobs(reconciler_app, rq_redis)
    assert processed_at(reconciler_app, order["id"]) is not None
    assert run_reconciler(reconciler_app) == 0  # processed: nothing more to do


def test_orders_within_the_grace_period_are_left_alone(database, client, alice, rq_redis):
    place_order(client, alice["headers"])
    app = make_app(RECONCILE_AFTER_SECONDS=60)
    assert run_reconciler(app) == 0
    assert Queue("orders", connection=rq_redis).job_ids == []
    assert run_reconciler(make_app(RECONCILE_AFTER_SECONDS=0)) == 1  # only its grace kept it waiting


def schedule(rq_redis, order_id, seconds_from_now):
    """Put the order's job in RQ's scheduled registry, as a retry waiting for its time."""
    job = Job.fetch(job_id(order_id), connection=rq_redis, serializer=JSONSerializer)
    queue = Queue("orders", connection=rq_redis)
    queue.remove(job)
    when = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    ScheduledJobRegistry(queue=queue).schedule(job, when)
    job.set_status(JobStatus.SCHEDULED)


def test_queued_scheduled_and_running_jobs_are_left_alone(reconciler_app, client, alice, rq_redis):
    queued, scheduled, running_now = (place_order(client, alice["headers"]) for _ in range(3))
    for order in (queued, scheduled, running_now):
        enqueue_process_order(reconciler_app.config, rq_redis, order["id"], None)
    schedule(rq_redis, scheduled["id"], seconds_from_now=10)
    running_job = Job.fetch(job_id(running_now["id"]), connection=rq_redis, serializer=JSONSerializer)
    running_job.set_status(JobStatus.STARTED)
    before = {order["id"]: job_status(rq_redis, order["id"]) for order in (queued, scheduled, running_now)}
    assert before[scheduled["id"]] == JobStatus.SCHEDULED
    assert run_reconciler(reconciler_app) == 0
    after = {order["id"]: job_status(rq_redis, order["id"]) for order in (queued, scheduled, running_now)}
    assert after == before
    rq_redis.flushdb()  # the same orders with their jobs lost: each is repaired
    assert run_reconciler(reconciler_app) == 3


def test_a_retry_no_scheduler_moved_is_run_again(reconciler_app, client, alice, rq_redis):
    order = place_order(client, alice["headers"])
    enqueue_process_order(reconciler_app.config, rq_redis, order["id"], None)
    schedule(rq_redis, order["id"], seconds_from_now=-1)  # overdue: its scheduler died with its worker
    assert run_reconciler(reconciler_app) == 1
    assert job_status(rq_redis, order["id"]) == JobStatus.QUEUED
    assert ScheduledJobRegistry(queue=Queue("orders", connection=rq_redis)).get_job_ids() == []


def test_a_job_that_exhausted_its_retries_is_run_again(reconciler_app, client, alice, rq_redis):
    order = place_order(client, alice["headers"])
    enqueue_process_order(reconciler_app.config, rq_redis, order["id"], None)
    # Every attempt fails: the database refuses the worker's statements.
    broken = make_app(**OVERDUE_AT_ONCE, SQLALCHEMY_DATABASE_URI=TEST_DATABASE_URL + "_missing")
    run_jobs(broken, rq_redis)
    assert FailedJobRegistry(queue=Queue("orders", connection=rq_redis)).get_job_ids() == [
        job_id(order["id"])
    ]
    assert run_reconciler(reconciler_app) == 1
    run_jobs(reconciler_app, rq_redis)
    assert processed_at(reconciler_app, order["id"]) is not None
    assert job_status(rq_redis, order["id"]) == JobStatus.FINISHED


def test_only_one_process_reconciles_at_a_time(reconciler_app, client, alice, rq_redis):
    order = place_order(client, alice["headers"])
    engine = create_engine(TEST_DATABASE_URL)
    with engine.connect() as other, other.begin():  # another replica, mid-round
        other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        assert run_reconciler(reconciler_app) is None
        assert job_status(rq_redis, order["id"]) is None
    engine.dispose()
    assert run_reconciler(reconciler_app) == 1


class CountedConnection(Connection):
    """A connection to the real Redis that counts its round trips: one per command or pipeline sent."""

    round_trips = 0

    def send_packed_command(self, command, check_health=True):
        CountedConnection.round_trips += 1
        super().send_packed_command(command, check_health)


def round_trips_of_a_round(app):
    """The Redis round trips of one reconciler round that repairs nothing."""
    before = CountedConnection.round_trips
    assert run_reconciler(app) == 0
    return CountedConnection.round_trips - before


def test_the_jobs_of_a_page_of_orders_are_read_in_one_round_trip(
    reconciler_app, client, alice, rq_redis, monkeypatch
):
    monkeypatch.setattr(reconciler, "BATCH_SIZE", 2)
    counted = Redis.from_url(TEST_REDIS_URL, connection_class=CountedConnection)
    counted.ping()  # connected: the handshake is not counted below
    reconciler_app.extensions["queue_redis"] = counted  # the reconciler's RQ client
    without_orders = round_trips_of_a_round(reconciler_app)
    orders = [place_order(client, alice["headers"]) for _ in range(5)]
    with reconciler_app.app_context():
        for order in orders:  # overdue, with queued jobs: each is looked at and left alone
            enqueue_process_order(reconciler_app.config, rq_redis, order["id"], None)
    assert round_trips_of_a_round(reconciler_app) == without_orders + 3  # pages of 2, 2 and 1


def test_the_overdue_query_is_served_by_the_partial_index(reconciler_app):
    with reconciler_app.app_context():
        db.session.execute(text("SET LOCAL enable_seqscan = off"))  # as on a table of millions
        plan = db.session.scalars(
            text(
                "EXPLAIN SELECT created_at, id FROM orders WHERE processed_at IS NULL "
                "AND created_at < now() - interval '60 seconds' ORDER BY created_at, id LIMIT 500"
            )
        ).all()
        db.session.rollback()
    assert any("ix_orders_unprocessed" in line for line in plan), plan


def test_the_relay_reconciles_periodically(database, client, alice, rq_redis):
    order = place_order(client, alice["headers"])
    settings = {"RECONCILE_INTERVAL_SECONDS": 0.2, "RELAY_SWEEP_SECONDS": 0.1, **OVERDUE_AT_ONCE}
    with running(relay_with_periodic_tasks, **settings):
        wait_for(lambda: job_status(rq_redis, order["id"]), message="the reconciled job")
        Job.fetch(job_id(order["id"]), connection=rq_redis, serializer=JSONSerializer).delete()  # lost again
        wait_for(lambda: job_status(rq_redis, order["id"]), message="the job given once more")


def test_the_relay_keeps_publishing_while_the_reconciler_cannot_reach_redis(
    database, client, alice, broker, topology, caplog
):
    """Redis down skips the reconciler's round, round after round, and nothing else: the relay
    neither stops nor reconnects."""
    unreachable = {"REDIS_URL": closed_port_url("redis", "/0"), "RECONCILE_INTERVAL_SECONDS": 0.1}
    with running(relay_with_periodic_tasks, RELAY_SWEEP_SECONDS=0.1, **unreachable):
        wait_for(lambda: caplog.text.count("Reconciler skipped a round") >= 2, message="two skipped rounds")
        place_order(client, alice["headers"])
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the event published")
    assert "Relay cannot reach a dependency" not in caplog.text


@pytest.mark.system
def test_a_job_left_started_by_a_worker_killed_with_sigkill_runs_again(database, client, alice, rq_redis):
    # Jobs time out after 2 s, and a worker counts as dead 1 s after that: a job it still holds
    # then is abandoned.
    app = make_app(**OVERDUE_AT_ONCE, JOB_TIMEOUT_SECONDS=2)
    order = place_order(client, alice["headers"])
    enqueue_process_order(app.config, rq_redis, order["id"], None)
    worker = start_process(WORKER, PROCESSING_DELAY_SECONDS="1.5", FLASK_JOB_ABANDONED_GRACE_SECONDS="1")
    try:
        wait_for(lambda: job_status(rq_redis, order["id"]) == JobStatus.STARTED, message="the job started")
    finally:
        kill_hard(worker)
    registry = StartedJobRegistry(queue=Queue("orders", connection=rq_redis))
    assert registry.get_job_ids() == [job_id(order["id"])]  # left behind, "running"
    assert run_reconciler(app) == 0  # within timeout + grace it may still be running

    def retried():  # RQ's registry cleanup, run by the reconciler, hands it to a retry
        run_reconciler(app)
        return job_status(rq_redis, order["id"]) == JobStatus.QUEUED

    wait_for(retried, timeout=10, message="the abandoned job retried")
    assert registry.get_job_ids() == []
    run_jobs(app, rq_redis)
    assert processed_at(app, order["id"]) is not None


CALLED_BACK = []


def record_callback(*args):
    """What a planted job names as its failure callback: here, a harmless witness."""
    CALLED_BACK.append(args)


def test_a_planted_abandoned_job_runs_no_callback(reconciler_app, rq_redis):
    """Whoever can write to Redis (rq-dashboard's user can) plants a "started" job naming a failure
    callback: RQ's cleanup of abandoned jobs, which the reconciler runs, would import and call it."""
    job = Job.create(
        "orders_app.jobs.process_order",
        args=["planted"],
        id="planted",
        connection=rq_redis,
        serializer=JSONSerializer,
        on_failure=Callback(f"{__name__}.record_callback"),
    )
    job.set_status(JobStatus.STARTED, pipeline=None)
    job.save()
    rq_redis.zadd(StartedJobRegistry(queue=Queue("orders", connection=rq_redis)).key, {"planted:1": 1})
    run_reconciler(reconciler_app)
    assert CALLED_BACK == []
    assert Job.fetch("planted", connection=rq_redis, serializer=JSONSerializer).get_status() == "failed"
