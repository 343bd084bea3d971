"""The event pipeline: the pika consumer, against real RabbitMQ and Redis."""

import json
import subprocess
import sys

import pika
import pytest
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from consumer.consumer import Consumer
from orders_app.job_queue import job_id

from support.broker import event_for, publish, ready_count
from support.client import place_order
from support.commands import running
from support.jobs import run_jobs
from support.network import TcpProxy
from support.polling import wait_for
from support.settings import ROOT, TEST_RABBITMQ_URL, TEST_REDIS_URL


def jobs_in(rq_redis):
    return Queue("orders", connection=rq_redis).job_ids


def test_an_event_becomes_one_unique_rq_job_then_is_acked(client, alice, broker, topology, rq_redis):
    order = place_order(client, alice["headers"])
    publish(broker, topology, event_for(order))
    with running(Consumer):
        wait_for(lambda: jobs_in(rq_redis), message="the job")
    assert jobs_in(rq_redis) == [f"process-order-{order['id']}"]
    job = Job.fetch(job_id(order["id"]), connection=rq_redis, serializer=JSONSerializer)
    assert job.func_name == "orders_app.jobs.process_order"
    assert job.args == [order["id"]]  # JSON: a list
    assert job.meta["request_id"] == "req-consumer"
    assert job.retries_left == 3
    assert job.retry_intervals == [2, 10, 30]  # growing
    assert ready_count(broker, topology.queue) == 0  # acked, and the consumer has stopped


def test_trace_headers_that_are_not_text_are_ignored(client, alice, broker, topology, rq_redis):
    """Anyone who can publish sets the headers: a traceparent the propagators cannot read must not
    stop the consumer (it did: every replica died on the message, redelivered forever)."""
    order = place_order(client, alice["headers"])
    headers = {"traceparent": 1, "tracestate": b"\xff", "other": None}
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2, headers=headers)
    broker.basic_publish(topology.exchange, topology.routing_key, json.dumps(event_for(order)), properties)
    with running(Consumer):
        wait_for(lambda: jobs_in(rq_redis), message="the job")
    assert jobs_in(rq_redis) == [f"process-order-{order['id']}"]
    assert ready_count(broker, topology.queue) == 0  # acked


def test_a_redelivered_event_makes_no_second_job_and_one_processing(
    app, client, alice, broker, topology, rq_redis, capfd
):
    order = place_order(client, alice["headers"])
    event = event_for(order)
    publish(broker, topology, event)
    publish(broker, topology, event)  # the same event, delivered twice
    with running(Consumer):
        wait_for(
            lambda: ready_count(broker, topology.queue) == 0 and jobs_in(rq_redis), message="both handled"
        )
    assert jobs_in(rq_redis) == [job_id(order["id"])]
    run_jobs(app, rq_redis)
    assert capfd.readouterr().out.count(f"Order {order['id']} processed") == 1
    assert client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json["processed_at"]


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        {"event": "order_deleted"},
        b"[" * 100_000,  # RecursionError in the JSON decoder
        b'{"a": ' * 100_000,
        {"order_id": "not-a-uuid"},  # a valid event with one bad field, below
        {"request_id": "two words"},  # not what the HTTP edge accepts as a request id
        {"request_id": "r" * 129},
        {"request_id": "ok\n"},
    ],
)
def test_malformed_messages_are_dead_lettered_and_make_no_job(
    client, alice, broker, topology, rq_redis, body
):
    if isinstance(body, dict) and "event" not in body:
        body = {**event_for(place_order(client, alice["headers"])), **body}
    publish(broker, topology, body)
    with running(Consumer):
        wait_for(lambda: ready_count(broker, topology.dead_letter_queue) == 1, message="the dead letter")
    assert ready_count(broker, topology.queue) == 0
    assert jobs_in(rq_redis) == []


def test_redis_down_leaves_the_message_unacked_until_redis_is_back(
    client, alice, broker, topology, rq_redis, caplog
):
    order = place_order(client, alice["headers"])
    redis_proxy = TcpProxy(TEST_REDIS_URL)  # closed: Redis is unreachable for the consumer
    publish(broker, topology, event_for(order))
    with running(Consumer, REDIS_URL=redis_proxy.url):
        # The consumer takes the message, cannot enqueue, and gives it back: never acked.
        wait_for(
            lambda: "ConnectionError" in caplog.text and ready_count(broker, topology.queue) == 1,
            message="a failed enqueue and the message back in the queue",
        )
        assert jobs_in(rq_redis) == []
        redis_proxy.start()
        try:
            wait_for(lambda: jobs_in(rq_redis), message="the job once Redis is back")
        finally:
            redis_proxy.stop()
    assert jobs_in(rq_redis) == [job_id(order["id"])]
    assert ready_count(broker, topology.queue) == 0


def test_the_consumer_reconnects_after_the_broker_goes_away(client, alice, broker, topology, rq_redis):
    broker_proxy = TcpProxy(TEST_RABBITMQ_URL).start()
    first, second = place_order(client, alice["headers"]), place_order(client, alice["headers"])
    with running(Consumer, RABBITMQ_URL=broker_proxy.url):
        publish(broker, topology, event_for(first))
        wait_for(lambda: job_id(first["id"]) in jobs_in(rq_redis), message="the first job")
        broker_proxy.stop()  # the broker "restarts": connections cut, port closed
        publish(broker, topology, event_for(second))
        broker_proxy.start()
        try:
            wait_for(lambda: job_id(second["id"]) in jobs_in(rq_redis), message="the job after reconnecting")
        finally:
            broker_proxy.stop()


def redeliver(channel, queue):
    """Take the next message and hand it back unacked, as a consumer that died holding it would."""
    method, _, _ = channel.basic_get(queue)
    channel.basic_reject(method.delivery_tag, requeue=True)


def test_a_message_that_keeps_coming_back_is_dead_lettered(client, alice, broker, topology, rq_redis):
    order = place_order(client, alice["headers"])
    publish(broker, topology, event_for(order))
    redeliver(broker, topology.queue)
    with running(Consumer, CONSUMER_MAX_REDELIVERIES=0):
        wait_for(lambda: ready_count(broker, topology.dead_letter_queue) == 1, message="the dead letter")
    assert jobs_in(rq_redis) == []


def test_redeliveries_are_counted_per_message_up_to_the_limit(client, alice, broker, topology, rq_redis):
    order = place_order(client, alice["headers"])
    publish(broker, topology, event_for(order))
    redeliver(broker, topology.queue)
    with running(Consumer, CONSUMER_MAX_REDELIVERIES=1):  # one redelivery is allowed
        wait_for(lambda: jobs_in(rq_redis), message="the job")
    assert ready_count(broker, topology.dead_letter_queue) == 0
    assert [int(rq_redis.get(key)) for key in rq_redis.scan_iter("consumer:redeliveries:*")] == [1]


@pytest.mark.system
def test_the_consumer_builds_no_app_and_imports_no_database_code():
    """It needs its configuration, Redis and RabbitMQ: not the Flask app, its extensions or models."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, consumer.__main__; print(*sorted(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    unneeded = ("orders_app.factory", "orders_app.extensions", "orders_app.models", "sqlalchemy")
    assert [name for name in imported if name.startswith(unneeded)] == []
