"""The event pipeline: the outbox and the relay, against real PostgreSQL and RabbitMQ."""

import json
import signal
import threading
import time

import pytest
from pika.exceptions import UnroutableError
from sqlalchemy import func, select, text

from orders_app.events.outbox import NOTIFY_CHANNEL
from orders_app.events.relay import Relay
from orders_app.events.topology import connect
from orders_app.extensions import db
from orders_app.lifecycle import GracefulStop, PeriodicTask
from orders_app.models import OutboxEvent

from support.broker import drain, ready_count
from support.client import place_order
from support.commands import RELAY, running, start_process
from support.database import add_outbox_rows, add_published_events, unpublished
from support.network import TcpProxy, closed_port_url
from support.polling import wait_for
from support.settings import TEST_RABBITMQ_URL, make_app


def test_creating_an_order_writes_its_event_to_the_outbox_in_the_same_transaction(app, client, alice):
    order = place_order(client, alice["headers"])
    with app.app_context():
        event = db.session.scalar(select(OutboxEvent))
    assert event.event_type == "new_order"
    assert event.published_at is None
    assert event.payload["order_id"] == order["id"]


def test_an_idempotent_replay_writes_no_second_event(app, client, alice):
    for _ in range(2):
        place_order(client, alice["headers"], **{"Idempotency-Key": "once"})
    assert unpublished(app) == 1


def test_a_rejected_order_writes_no_event(app, client, alice):
    client.post("/orders/", json={"items": []}, headers=alice["headers"])
    assert unpublished(app) == 0


def test_the_event_has_the_exact_body_and_properties(app, client, alice, broker, topology):
    order = place_order(client, alice["headers"], **{"X-Request-ID": "req-body-1"})
    with running(Relay):
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the event")
    [(properties, body)] = drain(broker, topology.queue)
    with app.app_context():
        event = db.session.scalar(select(OutboxEvent))
    assert json.loads(body) == {
        "event": "new_order",
        "event_id": str(event.id),
        "order_id": order["id"],
        "user_id": alice["user"]["id"],
        "total_price": "21.00",
        "created_at": order["created_at"],
        "request_id": "req-body-1",
    }
    assert properties.content_type == "application/json"
    assert properties.delivery_mode == 2  # persistent
    assert properties.type == "new_order"
    assert properties.message_id == str(event.id)
    assert properties.headers is None  # traces off: no trace context, in the message or the outbox
    assert event.trace_context is None
    assert event.published_at is not None


def test_notify_wakes_the_relay_at_once(app, client, alice, broker, topology):
    add_outbox_rows(app, 1)
    with running(Relay, RELAY_SWEEP_SECONDS=60):
        # Published by the first sweep: from now on the relay waits for a notification.
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the first sweep")
        place_order(client, alice["headers"])
        # Far sooner than the next sweep, 60 s away.
        wait_for(lambda: ready_count(broker, topology.queue) == 2, timeout=5, interval=0.01)


def add_notified_events(app, count, seconds_apart):
    """``count`` events, each committed with its NOTIFY in a transaction of its own, as orders are."""
    with app.app_context():
        for n in range(count):
            if n:
                time.sleep(seconds_apart)  # the orders' arrival, spread over time
            db.session.execute(
                text(
                    "INSERT INTO outbox_events (id, event_type, payload) "
                    "VALUES (gen_random_uuid(), 'new_order', jsonb_build_object('order_id', :n))"
                ),
                {"n": n},
            )
            db.session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))
            db.session.commit()


def mark_transactions(app):
    """How many transactions marked the outbox's events published (a batch each: its rows share
    the transaction id that last wrote them, ``xmin``)."""
    with app.app_context():
        return db.session.scalar(text("SELECT count(DISTINCT xmin::text) FROM outbox_events"))


def test_events_notified_within_the_gather_interval_go_in_one_batch(app, broker, topology):
    add_outbox_rows(app, 1)
    with running(Relay, RELAY_SWEEP_SECONDS=60, RELAY_GATHER_SECONDS=4):
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the first sweep")
        # Within 4 s of that batch: each notification is noticed, and the relay waits out the rest.
        add_notified_events(app, 5, seconds_apart=0.1)
        wait_for(lambda: ready_count(broker, topology.queue) == 6, message="the five events")
    assert unpublished(app) == 0
    assert mark_transactions(app) == 2  # the first sweep's batch, then one for the five


def test_a_stop_ends_the_gather_wait_at_once(app, broker, topology):
    add_outbox_rows(app, 1)
    stop = GracefulStop()
    relay_app = make_app(RELAY_SWEEP_SECONDS=60, RELAY_GATHER_SECONDS=60)

    def run():
        with relay_app.app_context():
            Relay(stop).run()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the first sweep")
        add_notified_events(app, 1, seconds_apart=0)  # the relay waits up to a minute to gather more
        time.sleep(0.5)  # for the relay to be in that wait (if not yet, this test cannot fail)
    finally:
        stop.request()
        thread.join(timeout=3)
    assert not thread.is_alive(), "the relay slept through its stop"
    assert unpublished(app) == 1  # left for the next relay: nothing is lost


def test_the_timer_sweep_publishes_an_event_whose_notification_was_missed(app, broker, topology):
    add_outbox_rows(app, 1)  # committed without NOTIFY, as is the next one
    with running(Relay, RELAY_SWEEP_SECONDS=0.3):
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the first sweep")
        add_outbox_rows(app, 1)
        wait_for(lambda: ready_count(broker, topology.queue) == 2, timeout=5, message="the swept event")


def test_between_batches_the_relay_runs_the_tasks_it_is_handed_and_only_those(
    app, client, alice, broker, topology, rq_redis, caplog
):
    """Each task runs at once, then again whenever its period is up. ``flask relay`` hands it the
    reconciler and housekeeping (test_reconciler, test_housekeeping); handed other tasks, it runs
    neither, however overdue their work."""
    place_order(client, alice["headers"])  # no job: the reconciler would give it one at once
    add_published_events(app, 1, hours_ago=1000)  # housekeeping would purge it at once
    runs = []
    often = PeriodicTask("often", 0.05, lambda: runs.append("often"))
    hourly = PeriodicTask("hourly", 3600, lambda: runs.append("hourly"))

    def relay(stop):
        return Relay(stop, periodic=[often, hourly])

    settings = {"RECONCILE_AFTER_SECONDS": 0, "RECONCILE_INTERVAL_SECONDS": 0.05}
    with running(relay, RELAY_SWEEP_SECONDS=0.05, HOUSEKEEPING_INTERVAL_SECONDS=0.05, **settings):
        wait_for(lambda: runs.count("often") >= 3, message="the frequent task, round after round")
        wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the order's event")
    assert runs.count("hourly") == 1
    assert "between batches: often every 0.05 s, hourly every 3600 s" in caplog.text
    assert rq_redis.keys("rq:job:*") == []  # nothing reconciled
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxEvent)) == 2  # nothing purged


def test_orders_are_accepted_while_the_broker_is_down_and_published_once_it_is_back(
    database, alice, broker, topology, caplog
):
    broker_proxy = TcpProxy(TEST_RABBITMQ_URL)  # closed: nothing listens on its port yet
    broker_url = broker_proxy.url
    web = make_app(RABBITMQ_URL=closed_port_url("amqp", "/%2F")).test_client()
    order = place_order(web, alice["headers"])  # 201: the request never waits for RabbitMQ
    with running(Relay, RABBITMQ_URL=broker_url):
        wait_for(lambda: connection_failures(caplog) >= 2, message="the relay to retry the broker")
        assert ready_count(broker, topology.queue) == 0
        broker_proxy.start()
        try:
            wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the event after the outage")
        finally:
            broker_proxy.stop()
    [(_, body)] = drain(broker, topology.queue)
    assert json.loads(body)["order_id"] == order["id"]


def connection_failures(caplog):
    return sum("Relay cannot reach a dependency" in record.getMessage() for record in caplog.records)


def test_two_relays_publish_every_event_exactly_once(app, broker, topology):
    event_ids = add_outbox_rows(app, 600)
    with running(Relay, RELAY_BATCH_SIZE=20), running(Relay, RELAY_BATCH_SIZE=20):
        wait_for(lambda: unpublished(app) == 0, timeout=30, message="all events published")
    message_ids = [properties.message_id for properties, _ in drain(broker, topology.queue)]
    assert sorted(message_ids) == sorted(event_ids)  # none skipped, none twice


@pytest.mark.system
def test_a_relay_killed_midway_and_restarted_loses_nothing(app, broker, topology):
    event_ids = add_outbox_rows(app, 3000)
    first = start_process(RELAY, FLASK_RELAY_BATCH_SIZE="5")
    try:
        wait_for(lambda: ready_count(broker, topology.queue) >= 200, message="publishing under way")
        first.send_signal(signal.SIGKILL)  # no chance to finish anything
    finally:
        first.wait(timeout=10)
    assert unpublished(app) > 0, "the relay finished before it could be killed midway"
    second = start_process(RELAY, FLASK_RELAY_BATCH_SIZE="5")
    try:
        wait_for(lambda: unpublished(app) == 0, timeout=60, message="the restarted relay to finish")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=10) == 0
    message_ids = [properties.message_id for properties, _ in drain(broker, topology.queue)]
    assert set(message_ids) == event_ids  # nothing lost
    assert len(message_ids) - len(event_ids) <= 5  # at most the batch in flight, twice


def test_a_batch_cut_short_marks_exactly_the_events_the_broker_confirmed(app, broker, topology):
    """An unroutable event (``mandatory``) stops the batch: those before it are marked published,
    it and those after it stay pending, in order, for the next batch."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO outbox_events (id, event_type, payload, created_at) "
                "SELECT gen_random_uuid(), CASE WHEN n = 3 THEN 'unroutable' ELSE 'new_order' END, "
                "jsonb_build_object('order_id', n), now() + n * interval '1 ms' "
                "FROM generate_series(1, 5) AS n"
            )
        )
        db.session.commit()
        relay = Relay()
        connection = connect(app.config)
        try:
            channel = connection.channel()
            channel.confirm_delivery()
            with pytest.raises(UnroutableError):
                relay.publish_batch(channel)
        finally:
            connection.close()
        pending = db.session.execute(
            select(
                OutboxEvent.payload["order_id"].as_integer(), OutboxEvent.published_at.is_not(None)
            ).order_by(OutboxEvent.created_at)
        ).all()
    assert pending == [(1, True), (2, True), (3, False), (4, False), (5, False)]
    assert [json.loads(body)["order_id"] for _, body in drain(broker, topology.queue)] == [1, 2]
