"""Graceful stops with real signals on real processes: the work in hand is finished, not lost."""

import signal

import pytest
from redis import Redis
from rq import Queue
from rq.job import JobStatus
from sqlalchemy import select

from orders_app.extensions import db
from orders_app.job_queue import enqueue_process_order, job_id
from orders_app.models import OutboxEvent

from support.broker import drain, event_for, publish, ready_count
from support.client import place_order
from support.commands import CONSUMER, RELAY, WORKER, start_process
from support.database import add_outbox_rows
from support.network import TcpProxy
from support.polling import wait_for
from support.settings import TEST_REDIS_URL

pytestmark = pytest.mark.system


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_relay_finishes_its_batch_and_exits_on_a_signal(app, broker, topology, signum):
    add_outbox_rows(app, 3000)
    relay = start_process(RELAY, FLASK_RELAY_BATCH_SIZE="50")
    wait_for(lambda: ready_count(broker, topology.queue) >= 100, message="publishing under way")
    relay.send_signal(signum)
    assert relay.wait(timeout=15) == 0
    with app.app_context():
        published = {
            str(i)
            for i in db.session.scalars(select(OutboxEvent.id).where(OutboxEvent.published_at.is_not(None)))
        }
    sent = [properties.message_id for properties, _ in drain(broker, topology.queue)]
    assert 0 < len(published) < 3000, "stopped midway"
    assert sorted(sent) == sorted(published)  # every message sent was marked, once, and nothing else


def test_the_consumer_finishes_the_message_in_hand_on_sigterm(client, alice, broker, topology):
    # Redis behind a slow link: enqueueing takes seconds, so SIGTERM arrives mid-message.
    slow_redis = TcpProxy(TEST_REDIS_URL, latency=0.5).start()
    consumer = start_process(CONSUMER, REDIS_URL=slow_redis.url)
    try:
        wait_for(lambda: broker.queue_declare(topology.queue, passive=True).method.consumer_count == 1)
        order = place_order(client, alice["headers"])
        publish(broker, topology, event_for(order))
        wait_for(lambda: ready_count(broker, topology.queue) == 0, message="the message delivered")
        consumer.send_signal(signal.SIGTERM)
        assert consumer.wait(timeout=20) == 0
    finally:
        slow_redis.stop()
    assert Queue("orders", connection=Redis.from_url(TEST_REDIS_URL)).job_ids == [job_id(order["id"])]
    assert ready_count(broker, topology.queue) == 0  # acked, not handed back


def test_the_worker_finishes_the_job_in_hand_on_sigterm(app, client, alice):
    rq_redis = Redis.from_url(TEST_REDIS_URL)
    order = place_order(client, alice["headers"])
    job = enqueue_process_order(app.config, rq_redis, order["id"], "req-warm-shutdown")
    worker = start_process(WORKER, PROCESSING_DELAY_SECONDS="2")
    wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, message="the job started")
    worker.send_signal(signal.SIGTERM)  # mid-job: RQ's warm shutdown
    assert worker.wait(timeout=20) == 0
    assert job.get_status(refresh=True) == JobStatus.FINISHED
    assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json["processed_at"]
