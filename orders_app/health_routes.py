"""The HTTP liveness and readiness endpoints, ``/health`` and ``/health/ready``.

Readiness runs ``orders_app.probes``, as ``flask prestart`` and the containers' health checks (a
command, ``orders_app.healthcheck``) do.
"""

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NotRequired, TypedDict

from flask import current_app
from flask.blueprints import BlueprintSetupState
from marshmallow import Schema, fields

from . import probes
from .adapters.smorest import Blueprint

log = logging.getLogger(__name__)

blp = Blueprint("health", __name__, url_prefix="/health", description="Liveness and readiness")
blp.RATE_LIMITED = False
blp.USES_DATABASE = False  # /health/ready documents its own 503


class HealthSchema(Schema):
    status = fields.String(required=True, metadata={"example": "ok"})


class ReadinessSchema(HealthSchema):
    checks = fields.Dict(keys=fields.String(), values=fields.String(), required=True)


# A probe: raises when the dependency does not answer within the timeout (seconds).
Check = Callable[[Mapping[str, Any], float], None]
CHECKS: dict[str, Check] = {
    "database": probes.check_postgresql,
    "redis": probes.check_redis,
    "rabbitmq": probes.check_rabbitmq,
}


@blp.route("", methods=["GET"])
@blp.response(200, HealthSchema)
def alive() -> dict[str, str]:
    """The process is up; touches no dependency."""
    return {"status": "ok"}


@blp.route("/ready", methods=["GET"])
@blp.response(200, ReadinessSchema)
@blp.alt_response(503, schema=ReadinessSchema, description="At least one dependency is failing")
def ready() -> tuple[dict[str, object], int]:
    """PostgreSQL, Redis and RabbitMQ each answer within ``HEALTH_CHECK_TIMEOUT`` seconds.

    Results are reused for ``HEALTH_CACHE_SECONDS``: a flood of probes runs each check once.
    """
    checks = recent_results()
    healthy = all(result == "ok" for result in checks.values())
    return {"status": "ok" if healthy else "failing", "checks": checks}, 200 if healthy else 503


class ReadinessCache(TypedDict):
    lock: threading.Lock
    expires: float  # time.monotonic()
    results: NotRequired[dict[str, str]]  # check name -> "ok" or "failing"


def recent_results() -> dict[str, str]:
    """The checks' results, at most ``HEALTH_CACHE_SECONDS`` old (per process and app).

    One caller at a time runs the checks; the others wait for its results instead of opening
    connections of their own.
    """
    cache: ReadinessCache = current_app.extensions["readiness"]
    with cache["lock"]:
        if time.monotonic() >= cache["expires"]:
            cache["results"] = {name: run_check(name, check) for name, check in CHECKS.items()}
            cache["expires"] = time.monotonic() + current_app.config["HEALTH_CACHE_SECONDS"]
        return cache["results"]


@blp.record_once
def init_readiness_cache(state: BlueprintSetupState) -> None:
    """Once per app, when it registers the blueprint: the lock and cache of ``recent_results``."""
    cache: ReadinessCache = {"lock": threading.Lock(), "expires": 0.0}
    state.app.extensions["readiness"] = cache


def run_check(name: str, check: Check) -> str:
    """ "ok" or "failing": the probe is public, so what failed and how is only in the log."""
    try:
        check(current_app.config, current_app.config["HEALTH_CHECK_TIMEOUT"])
        return "ok"
    except Exception as error:  # any failure of a dependency means "not ready"
        log.warning("Readiness check %s failed: %s: %s", name, type(error).__name__, error)
        return "failing"
