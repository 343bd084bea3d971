"""Flask's JSON written by orjson: the same meaning as Flask's default provider, and no 500 for
what orjson refuses."""

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from flask.json.provider import DefaultJSONProvider

from orders_app.adapters.json_provider import OrjsonProvider


@dataclasses.dataclass
class Point:
    x: int


SAMPLE = {
    "b": [1, 2.5, None, True],
    "a": {"date": datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "amount": Decimal("10.50")},
    "id": uuid.UUID(int=7),
    "errors": {3: "an integer key, as a 422's errors have for list positions"},
    "point": Point(1),
    "big": 2**70,  # beyond orjson's 64 bits: the standard library writes it
    "text": "Crème \u2603",
}


def test_the_output_means_what_flasks_default_provider_writes(app):
    ours, flasks = OrjsonProvider(app), DefaultJSONProvider(app)
    assert json.loads(ours.dumps(SAMPLE)) == json.loads(flasks.dumps(SAMPLE))
    without_big = {key: value for key, value in SAMPLE.items() if key != "big"}
    assert json.loads(ours.dumps(without_big)) == json.loads(flasks.dumps(without_big))
    assert list(json.loads(ours.dumps({"b": 1, "a": 2}))) == ["a", "b"]  # keys sorted, as Flask does


def test_a_lone_surrogate_echoed_back_is_a_422_not_a_500(client, alice):
    body = '{"items": [{"name": "Bread", "quantity": 1, "price": "1.00"}], "\\ud800": 1}'
    response = client.post(
        "/orders/", data=body, headers={**alice["headers"], "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json["errors"]["json"] == {"\ud800": ["Unknown field."]}


def test_responses_are_compact_and_indented_only_in_debug(app, client):
    assert client.get("/health").data == b'{"status":"ok"}\n'
    app.debug = True
    assert client.get("/health").data == b'{\n  "status": "ok"\n}\n'
