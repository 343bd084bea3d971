"""The blocking pika consumer of queue ``new_order``.

For each message: validate the body, enqueue ``process_order`` with the unique job id
``process-order-{order_id}`` (a redelivered event finds the job there and enqueues nothing), then
ack. A message that cannot be parsed or validated, whatever the reason, is rejected without
requeue, so it is dead-lettered to ``new_order.dead``.
If Redis is unreachable the message is not acked: the connection is closed, the broker requeues
it, and the consumer waits for Redis with backoff before consuming again.

Redeliveries are bounded: a message that keeps coming back (one that kills the consumer, say) is
dead-lettered after ``CONSUMER_MAX_REDELIVERIES``, counted in Redis per message body. Nothing is
lost by it: the order is in PostgreSQL, and the reconciler gives it its job again.

Traced (``orders_app.tracing``), handling a message continues the trace its headers carry.
"""

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import redis
from opentelemetry.trace import SpanKind
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties
from rq.exceptions import DuplicateJobError

from orders_app import tracing
from orders_app.adapters import redis_client
from orders_app.events.messages import schema as event_schema
from orders_app.events.topology import Topology, connect
from orders_app.job_queue import enqueue_process_order
from orders_app.lifecycle import Backoff, GracefulStop, Heartbeat, keep_serving
from orders_app.log import log_context
from orders_app.metrics import EVENTS_DEAD_LETTERED, JOBS_ENQUEUED

log = logging.getLogger(__name__)

# How often the consumer looks up from an idle queue to see whether it was asked to stop.
IDLE_CHECK_SECONDS = 1
# How long a message's redelivery count is kept.
REDELIVERY_COUNT_SECONDS = 24 * 3600


class Consumer:
    """Needs its configuration only (``orders_app.config.load_standalone_config``), not an app."""

    def __init__(self, config: Mapping[str, Any], stop: GracefulStop | None = None) -> None:
        self.config = config
        self.redis = redis_client.connect(config)  # RQ needs bytes: no decode_responses
        self.topology = Topology.from_config(self.config)
        self.stop = stop or GracefulStop()
        self.backoff = Backoff(maximum=self.config["RECONNECT_MAX_SECONDS"])
        self.heartbeat = Heartbeat(self.config["HEARTBEAT_FILE"])

    def run(self) -> None:
        """Consume until stopped; ride out outages of RabbitMQ and Redis."""
        failures = (AMQPError, redis.RedisError, OSError)
        keep_serving("Consumer", self._consume, self.stop, self.backoff, failures, self.heartbeat)

    def _consume(self) -> None:
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

    def handle(
        self, channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
    ) -> None:
        attributes = {
            "messaging.message.id": properties.message_id or "",
            "messaging.rabbitmq.redelivered": method.redelivered,
        }
        with tracing.span(
            f"process {method.routing_key}", SpanKind.CONSUMER, properties.headers, attributes=attributes
        ):
            self._handle(channel, method, properties, body)

    def _handle(
        self, channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, body: bytes
    ) -> None:
        if method.redelivered and self._count_redelivery(body) > self.config["CONSUMER_MAX_REDELIVERIES"]:
            self._dead_letter(channel, method, properties, "redelivered too many times")
            return
        try:
            event = event_schema.loads(body)
        except Exception as error:  # not UTF-8, not JSON, nested too deeply, invalid: all malformed
            self._dead_letter(channel, method, properties, f"malformed: {type(error).__name__}: {error}")
            return
        order_id, event_id = event["order_id"], event["event_id"]
        with log_context(event["request_id"], order_id):
            try:
                enqueue_process_order(self.config, self.redis, order_id, event["request_id"])
                JOBS_ENQUEUED.inc()
                log.info("Enqueued processing of order %s (event %s)", order_id, event_id)
            except DuplicateJobError:
                log.info("Order %s already has its job (event %s redelivered)", order_id, event_id)
            channel.basic_ack(method.delivery_tag)

    def _count_redelivery(self, body: bytes) -> int:
        """How many times this message came back to a consumer (raises ``redis.RedisError``)."""
        key = "consumer:redeliveries:" + hashlib.sha256(body).hexdigest()
        pipeline = self.redis.pipeline()
        pipeline.incr(key)
        pipeline.expire(key, REDELIVERY_COUNT_SECONDS)
        count: int
        count, _ = pipeline.execute()
        return count

    @staticmethod
    def _dead_letter(
        channel: BlockingChannel, method: Basic.Deliver, properties: BasicProperties, reason: str
    ) -> None:
        log.error("Dead-lettering message %s: %s", properties.message_id, reason[:500])
        channel.basic_reject(method.delivery_tag, requeue=False)
        EVENTS_DEAD_LETTERED.inc()
