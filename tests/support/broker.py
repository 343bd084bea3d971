"""RabbitMQ as the tests see it: messages taken off a queue, counted, published."""

import json
import uuid

import pika


def drain(channel, queue):
    """Take every ready message off ``queue``: a list of ``(properties, body)``."""
    messages = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            return messages
        messages.append((properties, body))


def ready_count(channel, queue):
    return channel.queue_declare(queue, passive=True).method.message_count


def event_for(order, request_id="req-consumer"):
    return {
        "event": "new_order",
        "event_id": str(uuid.uuid4()),
        "order_id": order["id"],
        "user_id": order["user_id"],
        "total_price": order["total_price"],
        "created_at": order["created_at"],
        "request_id": request_id,
    }


def publish(channel, topology, body):
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    channel.basic_publish(
        topology.exchange,
        topology.routing_key,
        body,
        pika.BasicProperties(content_type="application/json", delivery_mode=2),
    )
