"""The test database as a test inspects it: the outbox, and sessions waiting on a lock."""

from sqlalchemy import func, select, text

from orders_app.extensions import db
from orders_app.models import OutboxEvent


def unpublished(app):
    with app.app_context():
        return db.session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.published_at.is_(None))
        )


def add_outbox_rows(app, count):
    """``count`` pending events, written in one statement (the relay does not read their payload)."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO outbox_events (id, event_type, payload) "
                "SELECT gen_random_uuid(), 'new_order', jsonb_build_object('order_id', n) "
                "FROM generate_series(1, :count) AS n"
            ),
            {"count": count},
        )
        db.session.commit()
        return {str(i) for i in db.session.scalars(select(OutboxEvent.id))}


def add_published_events(app, count, hours_ago):
    """``count`` events published ``hours_ago`` hours ago (``None``: not published, created 100
    hours ago), written in one statement."""
    with app.app_context():
        db.session.execute(
            text(
                "INSERT INTO outbox_events (id, event_type, payload, created_at, published_at) "
                "SELECT gen_random_uuid(), 'new_order', '{}', now() - interval '100 hours', "
                "now() - make_interval(hours => :hours) FROM generate_series(1, :count)"
            ),
            {"count": count, "hours": hours_ago},
        )
        db.session.commit()


def blocked_by(connection):
    """How many sessions wait on a lock that ``connection``'s session holds (after a fresh
    statistics snapshot: within one transaction pg_stat_activity would stay the same)."""
    connection.execute(text("SELECT pg_stat_clear_snapshot()"))
    return connection.scalar(
        text("SELECT count(*) FROM pg_stat_activity WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))")
    )
