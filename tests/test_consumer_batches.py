"""The consumer handles the messages delivered together as one batch: their jobs enqueued in one
Redis round trip, then one ack. At-least-once holds: a kill or a stop mid-burst leaves no handled
message unacked and loses none; a bad message is dead-lettered on its own.

Against real RabbitMQ and Redis; the events are for orders that need not exist (the consumer does
not read PostgreSQL).
"""

import json
import signal
import uuid

import pika
import pytest
import redis
from rq import Queue

from consumer.consumer import Consumer, Delivery
from orders_app.adapters.rq import enqueue_unique
from orders_app.job_queue import enqueue_process_order, job_id, orders_queue, process_order_job

from support.broker import drain, publish, ready_count
from support.commands import CONSUMER, kill_hard, running, start_process
from support.network import TcpProxy
from support.polling import wait_for
from support.settings import TEST_RABBITMQ_URL, TEST_REDIS_URL, make_config

BURST = 1000  # long enough for a kill or a stop to land in its middle


def new_order_event():
    return {
        "event": "new_order",
        "event_id": str(uuid.uuid4()),
        "order_id": str(uuid.uuid4()),
        "user_id": 1,
        "total_price": "2.50",
        "created_at": "2026-12-03T12:00:00+00:00",
        "request_id": "req-batch",
    }


def queued_jobs(rq_redis):
    """The job ids in the RQ queue, in order (a job enqueued twice would be there twice)."""
    return Queue("orders", connection=rq_redis).job_ids


@pytest.fixture
def channel(topology, broker):
    """A second channel: messages taken with ``basic_get`` on it stay unacked until it closes."""
    connection = pika.BlockingConnection(pika.URLParameters(TEST_RABBITMQ_URL))
    yield connection.channel()
    if connection.is_open:
        connection.close()


def take(channel, queue, count):
    """``count`` messages off ``queue``, unacked, as the consumer's callback collects them."""
    deliveries = []

    def took_one():
        method, properties, body = channel.basic_get(queue)
        if method is not None:
            deliveries.append(Delivery(method, properties, body))
        return method

    for _ in range(count):
        wait_for(took_one, message="a message")
    return deliveries


def test_a_job_enqueued_in_a_batch_is_the_job_rq_enqueues_and_is_never_overwritten(database, rq_redis):
    """``enqueue_unique`` writes what RQ's unique enqueue writes (but its timestamps), and leaves
    an existing job as it is (a redelivered event's job may be running, or done)."""
    config = make_config()
    order_id = str(uuid.uuid4())
    enqueue_process_order(config, rq_redis, order_id, "req-rq")
    by_rq = rq_redis.hgetall(f"rq:job:{job_id(order_id)}")
    rq_redis.flushdb()
    queue = orders_queue(config, rq_redis)
    assert enqueue_unique(queue, [process_order_job(config, queue, order_id, "req-rq")]) == [True]
    in_batch = rq_redis.hgetall(f"rq:job:{job_id(order_id)}")
    timestamps = {b"created_at", b"enqueued_at"}
    assert in_batch.keys() == by_rq.keys() >= timestamps
    assert {k: v for k, v in in_batch.items() if k not in timestamps} == {
        k: v for k, v in by_rq.items() if k not in timestamps
    }
    assert queued_jobs(rq_redis) == [job_id(order_id)]
    assert rq_redis.smembers("rq:queues") == {b"rq:queue:orders"}
    rq_redis.hset(f"rq:job:{job_id(order_id)}", "status", "finished")
    again = [process_order_job(config, queue, order_id, "req-again")]
    assert enqueue_unique(queue, again) == [False]
    assert rq_redis.hget(f"rq:job:{job_id(order_id)}", "status") == b"finished"
    assert queued_jobs(rq_redis) == [job_id(order_id)]


def test_a_burst_is_enqueued_as_one_batch_one_job_per_order_all_acked(
    database, broker, channel, topology, rq_redis
):
    events = [new_order_event() for _ in range(5)]
    events.append(events[2])  # the same event twice in one batch: one job still
    for event in events:
        publish(broker, topology, event)
    consumer = Consumer(make_config())
    consumer.handle(channel, take(channel, topology.queue, len(events)))
    assert queued_jobs(rq_redis) == [job_id(event["order_id"]) for event in events[:5]]
    channel.connection.close()  # an unacked message would be back in the queue now
    assert ready_count(broker, topology.queue) == 0
    assert ready_count(broker, topology.dead_letter_queue) == 0


@pytest.mark.parametrize("bad_position", [0, 2, 4])
def test_a_malformed_message_in_a_batch_is_dead_lettered_the_others_acked(
    database, broker, channel, topology, rq_redis, bad_position
):
    events = [new_order_event() for _ in range(4)]
    bodies = [json.dumps(event).encode() for event in events]
    bodies.insert(bad_position, b"not json")
    for body in bodies:
        publish(broker, topology, body)
    consumer = Consumer(make_config())
    consumer.handle(channel, take(channel, topology.queue, len(bodies)))
    assert queued_jobs(rq_redis) == [job_id(event["order_id"]) for event in events]
    channel.connection.close()
    assert ready_count(broker, topology.queue) == 0
    assert [body for _, body in drain(broker, topology.dead_letter_queue)] == [b"not json"]


def test_redis_down_acks_nothing_of_the_batch(database, broker, channel, topology, rq_redis):
    for _ in range(3):
        publish(broker, topology, new_order_event())
    consumer = Consumer(make_config(REDIS_URL=TcpProxy(TEST_REDIS_URL).url))  # closed: unreachable
    with pytest.raises(redis.ConnectionError):
        consumer.handle(channel, take(channel, topology.queue, 3))
    channel.connection.close()
    assert ready_count(broker, topology.queue) == 3  # all back, none dead-lettered
    assert ready_count(broker, topology.dead_letter_queue) == 0


def test_the_consumer_takes_a_burst_in_batches_of_at_most_its_prefetch(
    database, broker, topology, rq_redis, monkeypatch
):
    events = [new_order_event() for _ in range(50)]
    for event in events:
        publish(broker, topology, event)
    batches = []
    handle = Consumer.handle

    def counted(self, channel, deliveries):
        batches.append(len(deliveries))
        handle(self, channel, deliveries)

    monkeypatch.setattr(Consumer, "handle", counted)
    with running(Consumer, CONSUMER_PREFETCH=20):
        wait_for(lambda: len(queued_jobs(rq_redis)) == len(events), message="every job")
    assert sorted(queued_jobs(rq_redis)) == sorted(job_id(event["order_id"]) for event in events)
    assert ready_count(broker, topology.queue) == 0  # every message acked
    assert sum(batches) == len(events) and max(batches) <= 20 and len(batches) < len(events)


@pytest.mark.system
def test_a_consumer_killed_mid_burst_loses_nothing(database, broker, topology, rq_redis):
    events = [new_order_event() for _ in range(BURST)]
    for event in events:
        publish(broker, topology, event)
    process = start_process(CONSUMER)
    wait_for(lambda: queued_jobs(rq_redis), message="the first jobs")
    kill_hard(process)
    with running(Consumer):  # the unacked messages come back, redelivered: each job made once
        wait_for(lambda: len(queued_jobs(rq_redis)) == BURST, timeout=60, message="every job")
        wait_for(lambda: ready_count(broker, topology.queue) == 0, message="every message acked")
    assert sorted(queued_jobs(rq_redis)) == sorted(job_id(event["order_id"]) for event in events)
    assert ready_count(broker, topology.dead_letter_queue) == 0


@pytest.mark.system
def test_a_consumer_stopped_mid_burst_leaves_no_handled_message_unacked(database, broker, topology, rq_redis):
    events = [new_order_event() for _ in range(BURST)]
    for event in events:
        publish(broker, topology, event)
    process = start_process(CONSUMER)
    wait_for(lambda: queued_jobs(rq_redis), message="the first jobs")
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    handled = set(queued_jobs(rq_redis))
    back = {job_id(json.loads(body)["order_id"]) for _, body in drain(broker, topology.queue)}
    assert not handled & back  # a message whose job was made was acked
    assert handled | back == {job_id(event["order_id"]) for event in events}  # the rest came back
