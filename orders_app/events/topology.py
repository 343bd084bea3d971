"""RabbitMQ names and their declarations, shared by the relay and the consumer.

Whoever connects declares everything (idempotently): durable topic exchange ``orders``; durable
queue ``new_order`` bound by ``new_order``, dead-lettering to ``orders.dlx`` -> ``new_order.dead``.
``EVENTS_NAMESPACE`` prefixes every name so tests never touch a running stack's.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Self

import pika
from pika.adapters.blocking_connection import BlockingChannel

NEW_ORDER = "new_order"  # the event type, its routing key and (unprefixed) its queue


@dataclass(frozen=True)
class Topology:
    exchange: str
    queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    routing_key: str = NEW_ORDER

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Self:
        prefix = config["EVENTS_NAMESPACE"]
        return cls(
            exchange=f"{prefix}orders",
            queue=f"{prefix}{NEW_ORDER}",
            dead_letter_exchange=f"{prefix}orders.dlx",
            dead_letter_queue=f"{prefix}{NEW_ORDER}.dead",
        )

    def declare(self, channel: BlockingChannel) -> None:
        channel.exchange_declare(self.dead_letter_exchange, exchange_type="topic", durable=True)
        channel.queue_declare(self.dead_letter_queue, durable=True)
        channel.queue_bind(self.dead_letter_queue, self.dead_letter_exchange, routing_key=self.routing_key)
        channel.exchange_declare(self.exchange, exchange_type="topic", durable=True)
        channel.queue_declare(
            self.queue, durable=True, arguments={"x-dead-letter-exchange": self.dead_letter_exchange}
        )
        channel.queue_bind(self.queue, self.exchange, routing_key=self.routing_key)


def connection_parameters(config: Mapping[str, Any], timeout: float) -> pika.URLParameters:
    """``RABBITMQ_URL``'s connection parameters, for one attempt whose socket gives up connecting
    after ``timeout`` seconds: the relay's and consumer's (``connect``), and the probe's."""
    parameters = pika.URLParameters(config["RABBITMQ_URL"])
    parameters.socket_timeout = timeout
    parameters.connection_attempts = 1
    return parameters


def connect(config: Mapping[str, Any]) -> pika.BlockingConnection:
    """A blocking connection to ``RABBITMQ_URL``; failing fast, so callers can back off."""
    parameters = connection_parameters(config, timeout=10)
    parameters.heartbeat = config["RABBITMQ_HEARTBEAT_SECONDS"]
    parameters.blocked_connection_timeout = 10
    return pika.BlockingConnection(parameters)
