"""The migrations build exactly the schema the models describe."""

from flask_migrate import check
from sqlalchemy import text

from orders_app.extensions import db


def test_models_and_migrations_agree(app):
    with app.app_context():
        check()  # raises if autogenerate would emit any operation


def test_a_users_orders_are_indexed_in_listing_order(app):
    with app.app_context():
        definition = db.session.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_orders_user_id_created_at_id'")
        )
    assert definition.endswith("(user_id, created_at DESC, id DESC)")
