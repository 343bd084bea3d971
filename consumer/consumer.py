"""The blocking pika consumer of queue ``new_order``.

For each message: validate the body, enqueue ``process_order`` with the unique job id
``process-order-{order_id}`` (a redelivered event finds the job there and enqueues nothing), then
ack. A malformed message is rejected without requeue, so it is dead-lettered to ``new_order.dead``.
If Redis is unreachable the message is not acked: the connection is closed, the broker requeues
it, and the consumer waits for Redis with backoff before consuming again.
"""

import logging

import redis
from flask import current_app
from marshmallow import ValidationError
from pika.exceptions import AMQPError
from rq.exceptions import DuplicateJobError

from orders_app.events.messages import schema as event_schema
from orders_app.events.topology import Topology, connect
from orders_app.extensions import queue_redis
from orders_app.jobs import enqueue_process_order
from orders_app.lifecycle import Backoff, GracefulStop, Heartbeat, keep_serving
from orders_app.log import log_context
from orders_app.metrics import EVENTS_DEAD_LETTERED, JOBS_ENQUEUED

log = logging.getLogger(__name__)

# How often the consumer looks up from an idle queue to see whether it was asked to stop.
IDLE_CHECK_SECONDS = 1


class Consumer:
    def __init__(self, stop=None):
        self.config = current_app.config
        self.topology = Topology.from_config(self.config)
        self.stop = stop or GracefulStop()
        self.backoff = Backoff(maximum=self.config["RECONNECT_MAX_SECONDS"])
        self.heartbeat = Heartbeat(self.config["HEARTBEAT_FILE"])

    def run(self):
        """Consume until stopped; ride out outages of RabbitMQ and Redis. Needs an app context."""
        failures = (AMQPError, redis.RedisError, OSError)
        keep_serving("Consumer", self._consume, self.stop, self.backoff, failures, self.heartbeat)

    def _consume(self):
        connection = connect(self.config)
        try:
            channel = connection.channel()
            self.topology.declare(channel)
            channel.basic_qos(prefetch_count=self.config["CONSUMER_PREFETCH"])
            log.info("Consuming queue %s", self.topology.queue)
            for method, properties, body in channel.consume(
                self.topology.queue, inactivity_timeout=IDLE_CHECK_SECONDS
            ):
                self.heartbeat.beat()
                if method is not None:
                    self.handle(channel, method, properties, body)
                    self.backoff.reset()
                if self.stop.requested:
                    break
            channel.cancel()  # prefetched, unhandled messages go back to the queue
        finally:
            if connection.is_open:
                connection.close()

    def handle(self, channel, method, properties, body):
        try:
            event = event_schema.loads(body)
        except (ValidationError, ValueError) as error:  # ValueError: not JSON, not UTF-8
            log.error("Dead-lettering malformed message %s: %s", properties.message_id, error)
            channel.basic_reject(method.delivery_tag, requeue=False)
            EVENTS_DEAD_LETTERED.inc()
            return
        order_id, event_id = event["order_id"], event["event_id"]
        with log_context(event["request_id"], order_id):
            try:
                enqueue_process_order(queue_redis.client, order_id, event["request_id"])
                JOBS_ENQUEUED.inc()
                log.info("Enqueued processing of order %s (event %s)", order_id, event_id)
            except DuplicateJobError:
                log.info("Order %s already has its job (event %s redelivered)", order_id, event_id)
            channel.basic_ack(method.delivery_tag)
