"""The blocking pika consumer of queue ``new_order``.

It handles together the messages that pika has delivered (at most ``CONSUMER_PREFETCH``): each is
validated and its job made (``process_order`` with the unique job id ``process-order-{order_id}``),
then the jobs are enqueued in one Redis pipeline, each only if its id is new (a redelivered event
finds its job there and enqueues nothing), then one ``multiple`` ack acks them all. A message that
cannot be parsed or validated, whatever the reason, is rejected without requeue, on its own, before
that ack, so it is dead-lettered to ``new_order.dead`` while the others are acked.
If Redis is unreachable nothing is acked: the connection is closed, the broker requeues the
messages, and the consumer waits for Redis with backoff before consuming again. A stop (SIGTERM)
lets the messages in hand be enqueued and acked; those prefetched and not yet handed over go back.

Redeliveries are bounded: a message that keeps coming back (one that kills the consumer, say) is
dead-lettered after ``CONSUMER_MAX_REDELIVERIES``, counted in Redis per message body. Nothing is
lost by it: the order is in PostgreSQL, and the reconciler gives it its job again.

Traced (``orders_app.tracing``), handling a message continues the trace its headers carry; the
jobs of a batch are written in a span of its own, linked to each job's enqueue span.
"""

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from opentelemetry.trace import Span, SpanKind, use_span
from pika.adapters.blocking_connection import BlockingChannel
from pika.exceptions import AMQPError
from pika.spec import Basic, BasicProperties
from rq.job import Job

from orders_app import tracing
from orders_app.adapters import redis_client
from orders_app.adapters.rq import enqueue_unique
from orders_app.events.messages import schema as event_schema
from orders_app.events.topology import Topology, connect
from orders_app.job_queue import enqueue_span, orders_queue, process_order_job
from orders_app.lifecycle import Backoff, GracefulStop, Heartbeat, keep_serving
from orders_app.log import log_context
from orders_app.metrics import EVENTS_DEAD_LETTERED, JOBS_ENQUEUED

log = logging.getLogger(__name__)

# How often the consumer looks up from an idle queue to see whether it was asked to stop.
IDLE_CHECK_SECONDS = 1
# How long a message's redelivery count is kept.
REDELIVERY_COUNT_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Delivery:
    """A message as pika hands it over."""

    method: Basic.Deliver
    properties: BasicProperties
    body: bytes


@dataclass(frozen=True)
class Accepted:
    """A valid message, its job made (not yet in Redis), and the span of its handling."""

    delivery: Delivery
    event: dict[str, Any]
    job: Job
    span: Span


class Consumer:
    """Needs its configuration only (``orders_app.config.load_standalone_config``), not an app."""

    def __init__(self, config: Mapping[str, Any], stop: GracefulStop | None = None) -> None:
        self.config = config
        self.redis = redis_client.connect(config)  # RQ needs bytes: no decode_responses
        self.queue = orders_queue(config, self.redis)
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
            delivered: list[Delivery] = []
            consumer_tag = channel.basic_consume(
                self.topology.queue, lambda _channel, *message: delivered.append(Delivery(*message))
            )
            log.info("Consuming queue %s", self.topology.queue)
            # The broker cancels the consumer when the queue is deleted: then connect and declare again.
            while not self.stop.requested and consumer_tag in channel.consumer_tags:
                # Returns once pika has handed over what one read of the socket brought (or after
                # IDLE_CHECK_SECONDS): the callback above has then collected those messages.
                connection.process_data_events(time_limit=IDLE_CHECK_SECONDS)
                self.heartbeat.beat()
                if delivered:
                    self.handle(channel, delivered)
                    delivered.clear()
                    self.backoff.reset()
            channel.basic_cancel(consumer_tag)  # prefetched, unhandled messages go back to the queue
        finally:
            if connection.is_open:
                connection.close()

    def handle(self, channel: BlockingChannel, deliveries: Sequence[Delivery]) -> None:
        """Dead-letter the bad messages, each on its own; enqueue the others' jobs in one round trip
        to Redis (raises ``redis.RedisError``, nothing acked), then ack them with one ack."""
        spans: list[Span] = []  # each message's, ended with the batch
        accepted: list[Accepted] = []
        try:
            for delivery in deliveries:
                spans.append(span := self._handling_span(delivery))
                with use_span(span):
                    made = self._accept(channel, delivery)
                if made is not None:
                    accepted.append(Accepted(delivery, *made, span))
            if accepted:
                self._enqueue(accepted)
                channel.basic_ack(accepted[-1].delivery.method.delivery_tag, multiple=True)
        finally:
            for span in spans:
                span.end()

    @staticmethod
    def _handling_span(delivery: Delivery) -> Span:
        attributes = {
            "messaging.message.id": delivery.properties.message_id or "",
            "messaging.rabbitmq.redelivered": delivery.method.redelivered,
        }
        name = f"process {delivery.method.routing_key}"
        return tracing.start_span(name, SpanKind.CONSUMER, delivery.properties.headers, attributes)

    def _accept(self, channel: BlockingChannel, delivery: Delivery) -> tuple[dict[str, Any], Job] | None:
        """The event and its job; ``None`` for a message dead-lettered instead."""
        method, properties, body = delivery.method, delivery.properties, delivery.body
        if method.redelivered and self._count_redelivery(body) > self.config["CONSUMER_MAX_REDELIVERIES"]:
            self._dead_letter(channel, method, properties, "redelivered too many times")
            return None
        try:
            event: dict[str, Any] = event_schema.loads(body)
        except Exception as error:  # not UTF-8, not JSON, nested too deeply, invalid: all malformed
            self._dead_letter(channel, method, properties, f"malformed: {type(error).__name__}: {error}")
            return None
        with enqueue_span(event["order_id"]):
            return event, process_order_job(self.config, self.queue, event["order_id"], event["request_id"])

    def _enqueue(self, accepted: Sequence[Accepted]) -> None:
        links = [message.job.meta["trace_context"] for message in accepted]
        with tracing.span(
            "enqueue batch", links=links, attributes={"messaging.batch.message_count": len(accepted)}
        ):
            new = enqueue_unique(self.queue, [message.job for message in accepted])
        JOBS_ENQUEUED.inc(sum(new))
        for message, is_new in zip(accepted, new, strict=True):
            order_id, event_id = message.event["order_id"], message.event["event_id"]
            with use_span(message.span), log_context(message.event["request_id"], order_id):
                if is_new:
                    log.info("Enqueued processing of order %s (event %s)", order_id, event_id)
                else:
                    log.info("Order %s already has its job (event %s redelivered)", order_id, event_id)

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
