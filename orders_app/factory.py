"""The application factory: configuration, extensions, blueprints, error handlers, CLI."""

import os
from collections.abc import Mapping
from typing import Any

from flask import Flask
from swagger_ui_bundle import swagger_ui_path

from . import cli, http, metrics_routes, protection
from .adapters.json_provider import OrjsonProvider
from .adapters.smorest import SECURITY_SCHEME, Blueprint
from .auth import identity
from .auth import routes as auth_routes
from .auth.tokens import is_revoked
from .config import load_config
from .errors import register_jwt_error_handlers, register_service_error_handlers
from .extensions import api, cache_redis, db, jwt, migrate, queue_redis
from .health_routes import blp as health_blp
from .log import configure_logging
from .money import money_openapi_property
from .orders import routes as order_routes


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app; ``overrides`` win over every other configuration source (tests)."""
    app = Flask(__name__)
    app.json = OrjsonProvider(app)
    load_config(app.config, overrides)
    configure_logging(app.config["LOG_LEVEL"], app.config["LOG_FORMAT"])
    # Before any route exists: every path answers with and without its trailing slash.
    app.url_map.strict_slashes = False

    db.init_app(app)
    migrate.init_app(app, db, directory=os.path.join(os.path.dirname(app.root_path), "migrations"))
    cache_redis.init_app(app)
    queue_redis.init_app(app)
    jwt.init_app(app)
    jwt.token_in_blocklist_loader(is_revoked)
    identity.init_app(app)
    jwt.user_lookup_loader(identity.token_user_exists)
    register_jwt_error_handlers(jwt)
    register_service_error_handlers(app)
    http.init_app(app)
    cli.init_app(app)
    metrics_routes.init_app(app)
    _init_api(app)
    protection.init_app(app)  # the views' rate limits: once every view is registered
    return app


def _init_api(app: Flask) -> None:
    api.init_app(app)
    api.ma_plugin.converter.add_attribute_function(money_openapi_property)
    api.spec.components.security_scheme(
        SECURITY_SCHEME,
        {
            "type": "oauth2",
            "flows": {"password": {"tokenUrl": "/token", "refreshUrl": "/token/refresh", "scopes": {}}},
        },
    )
    for blueprint in (auth_routes.blp, order_routes.blp, health_blp):
        api.register_blueprint(blueprint)
    # Swagger UI's own files, served locally so /docs works without internet access.
    app.register_blueprint(
        Blueprint("swagger_ui", __name__, static_folder=swagger_ui_path, static_url_path="/docs/assets")
    )
