"""Faults aimed at the pipeline's narrow windows, stopped exactly there by what the process does
(no hook in the service): a TCP proxy holds what the process sends, so its next step cannot
happen, and it is killed with SIGKILL while it waits.

- The relay between the broker's confirm and its commit: the event is published again, and the
  consumer enqueues one job for it all the same.
- The consumer between enqueueing a job and its ack: the message comes back, and finds its job.
- The relay losing a live broker connection in the middle of a batch: it reconnects and goes on.
"""

import signal

import pytest
from redis import Redis
from rq import Queue

from consumer.consumer import Consumer
from orders_app.events.relay import Relay

from support.broker import drain, event_for, publish, ready_count
from support.client import place_order
from support.commands import CONSUMER, RELAY, running
from support.database import add_outbox_rows, unpublished
from support.metrics import metric
from support.network import TcpProxy, free_port
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL, TEST_RABBITMQ_URL, TEST_REDIS_URL

pytest_plugins = ["support.processes"]


def cut_while_held(proxy, processes, name):
    """SIGKILL process ``name`` while ``proxy`` holds what it sent, then drop that: it never arrives."""
    processes.kill(name)
    proxy.stop()
    proxy.release()  # the held bytes go to a closed socket
    proxy.start()


def queued_jobs():
    return Queue("orders", connection=Redis.from_url(TEST_REDIS_URL)).job_ids


@pytest.mark.system
def test_a_relay_killed_between_the_confirm_and_its_commit_publishes_again_and_one_job_is_made(
    app, client, alice, broker, topology, processes, caplog
):
    orders = [place_order(client, alice["headers"]) for _ in range(10)]
    database = TcpProxy(TEST_DATABASE_URL).start()
    # Each publish waits for its confirm: a slow broker makes the batch last 2 s or more.
    rabbitmq = TcpProxy(TEST_RABBITMQ_URL, latency=0.2).start()
    processes.start("relay", RELAY, DATABASE_URL=database.url, RABBITMQ_URL=rabbitmq.url)
    wait_for(lambda: ready_count(broker, topology.queue) >= 1, message="the first event published")
    database.hold()  # the batch was claimed; its UPDATE and COMMIT cannot reach PostgreSQL now
    wait_for(lambda: ready_count(broker, topology.queue) == 10, message="the whole batch confirmed")
    cut_while_held(database, processes, "relay")
    rabbitmq.stop()
    wait_for(lambda: unpublished(app) == 10, message="the claimed rows unlocked, still unpublished")

    processes.start("relay-again", RELAY)
    wait_for(lambda: unpublished(app) == 0, message="the events published again")
    assert ready_count(broker, topology.queue) == 20  # each twice: at least once, as promised
    with running(Consumer):
        wait_for(lambda: caplog.text.count("already has its job (event") == 10, message="every duplicate")
    assert sorted(queued_jobs()) == sorted(f"process-order-{order['id']}" for order in orders)
    assert ready_count(broker, topology.queue) == 0


@pytest.mark.system
def test_a_consumer_killed_between_enqueue_and_ack_gets_the_message_again_and_makes_no_second_job(
    client, alice, broker, topology, processes
):
    rabbitmq = TcpProxy(TEST_RABBITMQ_URL).start()
    processes.start("consumer", CONSUMER, RABBITMQ_URL=rabbitmq.url)
    wait_for(lambda: "Consuming queue" in processes.current_log("consumer"), message="the consumer")
    rabbitmq.hold()  # deliveries still reach the consumer; its ack does not reach the broker
    order = place_order(client, alice["headers"])
    publish(broker, topology, event_for(order))
    wait_for(queued_jobs, message="the job enqueued")
    cut_while_held(rabbitmq, processes, "consumer")
    wait_for(lambda: ready_count(broker, topology.queue) == 1, message="the unacked message requeued")

    metrics_port = free_port()
    processes.start("consumer-again", CONSUMER, FLASK_METRICS_PORT=str(metrics_port))
    wait_for(lambda: ready_count(broker, topology.queue) == 0, message="the redelivery taken")
    wait_for(lambda: "already has its job" in processes.current_log("consumer-again"), message="its ack")
    assert queued_jobs() == [f"process-order-{order['id']}"]
    assert (
        metric(metrics_port, "orders_jobs_enqueued_total") == 0
    )  # a redelivery is not counted as an enqueued job
    processes.running["consumer-again"].send_signal(signal.SIGTERM)
    assert processes.running.pop("consumer-again").wait(timeout=30) == 0


def test_a_relay_losing_its_live_broker_connection_mid_batch_reconnects_and_publishes_everything(
    app, broker, topology, caplog
):
    event_ids = add_outbox_rows(app, 600)
    rabbitmq = TcpProxy(TEST_RABBITMQ_URL).start()
    with running(Relay, RABBITMQ_URL=rabbitmq.url, RELAY_BATCH_SIZE=50):
        wait_for(lambda: ready_count(broker, topology.queue) >= 100, message="publishing under way")
        rabbitmq.reset()  # mid-batch: publishes in flight, confirms not yet read
        assert unpublished(app) > 0, "the relay finished before its connection was cut"
        wait_for(lambda: unpublished(app) == 0, timeout=60, message="every event published after the cut")
    rabbitmq.stop()
    assert "Relay cannot reach a dependency (" in caplog.text
    message_ids = [properties.message_id for properties, _ in drain(broker, topology.queue)]
    assert set(message_ids) == event_ids
    assert len(message_ids) - len(event_ids) <= 50  # at most the batch in flight, twice
