"""The JSON log line: its fields, and what it makes of values JSON has no type for."""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from orders_app.log import ContextFilter, JsonFormatter, log_context


def formatted(message, *args, exc_info=None, **extra):
    """The JSON object the service's formatter writes for this record, ids from the context included."""
    record = logging.LogRecord("orders_app.test", logging.WARNING, __file__, 1, message, args, exc_info)
    record.__dict__.update(extra)
    ContextFilter().filter(record)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    return json.loads(line)


def test_a_line_has_time_level_logger_message_ids_and_extra_fields():
    with log_context(request_id="req-1", order_id="order-1"):
        line = formatted("GET %s %s", "/health", 200, status=200, duration_ms=1.5, nothing=None)
    time = line.pop("time")
    assert datetime.fromisoformat(time).tzinfo == UTC and len(time) == len("2026-11-22T18:00:00.123+00:00")
    assert line == {
        "level": "WARNING",
        "logger": "orders_app.test",
        "message": "GET /health 200",
        "status": 200,
        "duration_ms": 1.5,
        "request_id": "req-1",
        "order_id": "order-1",
    }  # no null fields


def test_values_json_has_no_type_for_are_written_as_their_str():
    @dataclass
    class Point:
        x: int

    values = {
        "id": uuid.uuid4(),
        "amount": Decimal("10.50"),
        "at": datetime(2026, 11, 22, 18, 0, tzinfo=UTC),
        "point": Point(1),
        "kind": type,
    }
    line = formatted("values", **values)
    assert {key: line[key] for key in values} == {key: str(value) for key, value in values.items()}


def test_an_exception_is_logged_with_its_traceback():
    try:
        raise ValueError("boom")
    except ValueError as error:
        line = formatted("failed", exc_info=(type(error), error, error.__traceback__))
    assert line["exception"].startswith("Traceback") and line["exception"].endswith("ValueError: boom")


def test_text_orjson_cannot_encode_still_makes_a_json_line():
    line = formatted("name %s", "\ud800", big=2**70)  # a lone surrogate (JSON's "\ud800"), a big integer
    assert line["message"] == "name \ud800" and line["big"] == 2**70
