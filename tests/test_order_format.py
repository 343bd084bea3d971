"""Orders are written in the API's format by a fast path (``order_data``), and new_order events are written
directly: byte for byte what marshmallow writes from their fields, for models and for the plain
rows the list and create read."""

import json
import uuid

import marshmallow
from sqlalchemy import select, text

from orders_app.events import messages
from orders_app.events.messages import new_order_event
from orders_app.extensions import db
from orders_app.models import Order
from orders_app.orders import service
from orders_app.orders.schemas import OrderSchema, order_data

from support.client import place_order

ITEMS = [
    {"name": "Bread", "quantity": 2, "price": "10.5"},
    {"name": "Crème fraîche \u2603", "quantity": 10_000, "price": 7},
    {"name": "x  y ", "quantity": 1, "price": "0.01"},
]


def as_bytes(data):
    return json.dumps(data).encode()


def test_the_fast_path_writes_what_marshmallow_writes(app, client, alice):
    placed = [place_order(client, alice["headers"], ITEMS) for _ in range(3)]
    client.patch(f"/orders/{placed[1]['id']}/", json={"status": "PAID"}, headers=alice["headers"])
    with app.app_context():
        service.mark_processed(placed[2]["id"])
        # Written by hand, not through the API: amounts not in the API's own form.
        db.session.execute(
            text(
                "INSERT INTO orders (id, user_id, items, total_price, status) VALUES (gen_random_uuid(), "
                """:user, '[{"name": "Tea", "quantity": 3, "price": "1.5"}]', 4.5, 'SHIPPED')"""
            ),
            {"user": alice["user"]["id"]},
        )
        models = db.session.scalars(select(Order)).all()
        rows = db.session.execute(select(*Order.__table__.columns)).all()
        schema = OrderSchema()
        for orders in (models, rows):
            expected = [marshmallow.Schema.dump(schema, order) for order in orders]
            assert [as_bytes(order_data(order)) for order in orders] == [as_bytes(e) for e in expected]
    assert {order["processed_at"] is None for order in expected} == {True, False}  # both kinds seen


def test_the_new_order_event_is_what_its_schema_writes(app, client, alice):
    placed = place_order(client, alice["headers"], ITEMS)
    with app.app_context():
        row = db.session.execute(select(*Order.__table__.columns).where(Order.id == placed["id"])).one()
        for request_id in ("create-1", None):
            event = new_order_event(row, request_id)
            fields = {**event, "event_id": uuid.UUID(event["event_id"]), "order_id": row.id}
            fields.update(total_price=row.total_price, created_at=row.created_at)
            assert as_bytes(event) == as_bytes(messages.schema.dump(fields))
    assert messages.schema.validate(event) == {}  # what the consumer accepts
