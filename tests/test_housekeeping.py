"""Housekeeping: published outbox events past their retention and expired idempotency keys are
purged, in batches, by ``flask relay`` between its batches and by ``flask purge``."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, func, select, text

from orders_app.cli import relay_with_periodic_tasks
from orders_app.extensions import db
from orders_app.housekeeping import BATCH_SIZE, purge
from orders_app.models import IdempotencyKey, OutboxEvent

from support.client import place_order
from support.commands import running
from support.database import add_published_events
from support.polling import wait_for
from support.settings import TEST_DATABASE_URL

RETENTION_HOURS = 72  # the default


def events_by_age(app):
    """``{hours since published (None: unpublished): count}``."""
    with app.app_context():
        hours = func.round(func.extract("epoch", func.now() - OutboxEvent.published_at) / 3600)
        rows = db.session.execute(select(hours, func.count()).group_by(hours)).all()
        db.session.rollback()
    return {None if age is None else int(age): count for age, count in rows}


def age_keys(app, user_id, hours_by_key):
    with app.app_context():
        for key, hours in hours_by_key.items():
            record = db.session.get(IdempotencyKey, (user_id, key))
            record.created_at = func.now() - func.make_interval(0, 0, 0, 0, 0, 0, hours * 3600)
        db.session.commit()


def key_names(app):
    with app.app_context():
        names = sorted(db.session.scalars(select(IdempotencyKey.key)))
        db.session.rollback()
    return names


def run_purge(app, **options):
    with app.app_context():
        return purge(**options)


def test_published_events_past_their_retention_are_purged_and_the_rest_kept(app):
    add_published_events(app, 3, hours_ago=RETENTION_HOURS + 1)
    add_published_events(app, 2, hours_ago=RETENTION_HOURS - 1)
    add_published_events(app, 1, hours_ago=None)  # old, but never published: the relay's work
    assert run_purge(app)["outbox_events"] == 3
    assert events_by_age(app) == {RETENTION_HOURS - 1: 2, None: 1}


def test_the_retention_is_a_setting(app):
    add_published_events(app, 2, hours_ago=2)
    app.config["OUTBOX_RETENTION_HOURS"] = 1
    assert run_purge(app)["outbox_events"] == 2


def test_idempotency_keys_go_an_hour_after_their_24_hour_window(app, client, alice):
    for key in ("fresh", "expired-just-now", "expired-long-ago"):
        place_order(client, alice["headers"], **{"Idempotency-Key": key})
    age_keys(app, alice["user"]["id"], {"expired-just-now": 24.5, "expired-long-ago": 25.5})
    assert run_purge(app)["idempotency_keys"] == 1
    assert key_names(app) == ["expired-just-now", "fresh"]


def test_a_backlog_goes_in_batches_and_a_round_can_be_bounded(app):
    add_published_events(app, 2 * BATCH_SIZE + 10, hours_ago=RETENTION_HOURS + 1)
    assert run_purge(app, max_batches=2)["outbox_events"] == 2 * BATCH_SIZE
    assert run_purge(app, max_batches=2)["outbox_events"] == 10
    assert events_by_age(app) == {}


def test_rows_another_purge_holds_are_skipped_not_waited_for(app):
    """Several relays purge at once: each takes rows the others have not locked."""
    add_published_events(app, 5, hours_ago=RETENTION_HOURS + 1)
    engine = create_engine(TEST_DATABASE_URL)
    with engine.connect() as other, ThreadPoolExecutor(1) as pool:
        other.execute(text("SELECT id FROM outbox_events ORDER BY id LIMIT 2 FOR UPDATE"))
        assert pool.submit(run_purge, app).result(timeout=10)["outbox_events"] == 3
        other.rollback()
    engine.dispose()
    assert run_purge(app)["outbox_events"] == 2


def test_the_purge_queries_use_their_indexes(app):
    with app.app_context():
        db.session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny tables: make it choose
        plans = {
            table: "\n".join(
                db.session.scalars(text(f"EXPLAIN SELECT 1 FROM {table} WHERE {column} < now()"))
            )
            for table, column in (("outbox_events", "published_at"), ("idempotency_keys", "created_at"))
        }
        db.session.rollback()
    assert "ix_outbox_events_published_at" in plans["outbox_events"]
    assert "ix_idempotency_keys_created_at" in plans["idempotency_keys"]


@pytest.mark.usefixtures("broker")
def test_the_relay_purges_periodically(app, client, alice):
    place_order(client, alice["headers"], **{"Idempotency-Key": "old"})
    age_keys(app, alice["user"]["id"], {"old": 26})
    add_published_events(app, 1, hours_ago=RETENTION_HOURS + 1)
    with running(relay_with_periodic_tasks, HOUSEKEEPING_INTERVAL_SECONDS=0.2, RELAY_SWEEP_SECONDS=0.1):
        wait_for(lambda: key_names(app) == [], message="the expired key purged")
        wait_for(lambda: RETENTION_HOURS + 1 not in events_by_age(app), message="the old event purged")
        add_published_events(app, 1, hours_ago=RETENTION_HOURS + 1)  # and again, next round
        wait_for(lambda: RETENTION_HOURS + 1 not in events_by_age(app), message="the next one purged")
    assert events_by_age(app) == {0: 1}  # the order's own event, published just now, stays


def test_flask_purge_purges_now(app, client, alice):
    place_order(client, alice["headers"], **{"Idempotency-Key": "old"})
    age_keys(app, alice["user"]["id"], {"old": 26})
    add_published_events(app, 2, hours_ago=RETENTION_HOURS + 1)
    result = app.test_cli_runner().invoke(args=["purge"])
    assert result.exit_code == 0, result.output
    assert "Deleted 2 published outbox events and 1 expired idempotency keys" in result.output
    assert key_names(app) == []
