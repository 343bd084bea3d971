"""Flask CLI commands: prestart, create-admin, set-admin, purge, reconcile, relay and worker."""

import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import click
import redis
from flask import Flask, current_app
from flask.cli import with_appcontext
from flask_migrate import upgrade
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from . import housekeeping, probes, reconciler, tracing
from .auth.passwords import hash_password
from .auth.schemas import LowerCaseEmail, RegisterSchema
from .config import web_connections, web_workers
from .database import create_database_if_missing
from .events.relay import Relay
from .extensions import db
from .lifecycle import GracefulStop, PeriodicTask
from .metrics import serve_process_metrics
from .models import User
from .worker import run_worker

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "Redis": 'redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save ""',
    "RabbitMQ": "rabbitmq-server -detached",
}


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@"))
    return parts.geturl()


def _unreachable(service: str, url: str, error: BaseException | None) -> str:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return (
        f"{service} is not reachable at {_redacted(url)} ({first_line}).\n"
        f"  Start it with: {HOW_TO_START[service]}  (or point the URL variable at a running one)"
    )


@click.command("prestart")
@with_appcontext
def prestart() -> None:
    """Check PostgreSQL, Redis and RabbitMQ, create the database if missing, migrate."""
    config = current_app.config
    problems: list[str] = []
    try:  # PostgreSQL's check: the service's database may not exist yet, unlike the probe's
        if create_database_if_missing(config["SQLALCHEMY_DATABASE_URI"]):
            click.echo("Created the database")
    except OperationalError as error:
        problems.append(_unreachable("PostgreSQL", config["SQLALCHEMY_DATABASE_URI"], error.orig))
    for service, check, url_key in (
        ("Redis", probes.check_redis, "REDIS_URL"),
        ("RabbitMQ", probes.check_rabbitmq, "RABBITMQ_URL"),
    ):
        try:
            check(config, config["HEALTH_CHECK_TIMEOUT"])
        except Exception as error:  # any failure here is reported the same way
            problems.append(_unreachable(service, config[url_key], error))
    if problems:
        raise click.ClickException("\n".join(problems))
    warn_if_the_web_may_exceed_max_connections(config)
    upgrade()


def warn_if_the_web_may_exceed_max_connections(config: Mapping[str, Any]) -> None:
    """Warn when the web alone may open more connections than PostgreSQL accepts: under load,
    requests would then fail to connect instead of waiting for a pooled connection."""
    wanted = web_connections(config)
    allowed = int(db.session.execute(select(func.current_setting("max_connections"))).scalar_one())
    if wanted > allowed:
        options = config["SQLALCHEMY_ENGINE_OPTIONS"]
        click.echo(
            f"Warning: the web may open {wanted} PostgreSQL connections ({web_workers()} workers x "
            f"(pool_size {options['pool_size']} + max_overflow {options['max_overflow']})), more than "
            f"the server's max_connections ({allowed}), before the relay, consumer and workers connect. "
            "Lower WEB_CONCURRENCY or FLASK_SQLALCHEMY_ENGINE_OPTIONS__pool_size / __max_overflow, "
            "raise max_connections, or put PgBouncer in front.",
            err=True,
        )


def _email_argument(email: str) -> str:
    try:
        return LowerCaseEmail().deserialize(email)
    except ValidationError as error:
        raise click.BadParameter(" ".join(error.messages), param_hint="EMAIL") from None


def _commit_role_change(email: str) -> None:
    """Commit; the user's tokens stop working once it is (tokens.is_revoked), Redis permitting."""
    try:
        db.session.commit()
    except redis.RedisError as error:
        raise click.ClickException(
            f"{email}'s role is changed, but Redis is unreachable ({error}): the user's tokens keep "
            "their old rights until they expire (15 minutes for an access token)"
        ) from None


@click.command("create-admin")
@with_appcontext
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read a new user's password from the first line of stdin (scripts).",
)
def create_admin(email: str, password_stdin: bool) -> None:
    """Make EMAIL an admin, creating the user if it does not exist.

    A new user's password is prompted for, or read from stdin: never an argument, which
    ``ps`` and the shell history would show.
    """
    email = _email_argument(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        else:
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        problems = RegisterSchema().validate({"email": email, "password": password}).get("password")
        if problems:
            raise click.BadParameter(" ".join(problems), param_hint="password")
        user = User(email=email, password_hash=hash_password(password))
        db.session.add(user)
    user.is_admin = True
    _commit_role_change(email)
    click.echo(f"{email} is an admin (user id {user.id})")


@click.command("set-admin")
@with_appcontext
@click.argument("email")
@click.option("--revoke", is_flag=True, help="Take the admin rights away instead of granting them.")
def set_admin(email: str, revoke: bool) -> None:
    """Grant an existing user EMAIL admin rights, or take them away with --revoke.

    The user's tokens stop working at the next request: they log in again with the new rights.
    """
    email = _email_argument(email)
    user = db.session.scalar(select(User).where(User.email == email))
    if user is None:
        raise click.ClickException(f"No user {email}")
    user.is_admin = not revoke
    _commit_role_change(email)
    click.echo(f"{email} is {'no longer' if revoke else 'now'} an admin (user id {user.id})")


@click.command("purge")
@with_appcontext
def purge() -> None:
    """Delete published outbox events past their retention and expired idempotency keys, now
    (flask relay does it every HOUSEKEEPING_INTERVAL_SECONDS)."""
    deleted = housekeeping.purge()
    click.echo(
        f"Deleted {deleted['outbox_events']} published outbox events "
        f"and {deleted['idempotency_keys']} expired idempotency keys"
    )


@click.command("reconcile")
@with_appcontext
def reconcile() -> None:
    """Give overdue unprocessed orders their job again, once (flask relay does it every
    RECONCILE_INTERVAL_SECONDS)."""
    repaired = reconciler.reconcile()
    if repaired is None:
        raise click.ClickException("Another process is reconciling right now; try again shortly")
    click.echo(f"Gave {repaired} orders their job again")


def relay_with_periodic_tasks(stop: GracefulStop | None = None) -> Relay:
    """The relay as ``flask relay`` runs it: publishing, and between batches the reconciler and
    housekeeping, the periodic work every deployment needs, in the one process every deployment
    runs. Needs an app context."""
    config = current_app.config
    periodic = [
        PeriodicTask("reconciler", config["RECONCILE_INTERVAL_SECONDS"], reconciler.reconcile_round),
        PeriodicTask("housekeeping", config["HOUSEKEEPING_INTERVAL_SECONDS"], housekeeping.purge_round),
    ]
    return Relay(stop, periodic)


@click.command("relay")
@with_appcontext
def relay() -> None:
    """Publish outbox events, reconcile, purge.

    Publishes outbox events to RabbitMQ until SIGTERM/SIGINT; between batches, reconciles every
    RECONCILE_INTERVAL_SECONDS and purges every HOUSEKEEPING_INTERVAL_SECONDS.
    """
    serve_process_metrics(current_app.config)
    tracing.setup("orders-relay")
    outbox_relay = relay_with_periodic_tasks()
    outbox_relay.stop.install()
    outbox_relay.run()


@click.command("worker")
@with_appcontext
def worker() -> None:
    """Run an RQ worker (with its scheduler) on the orders queue until SIGTERM/SIGINT."""
    serve_process_metrics(current_app.config)
    tracing.setup("orders-worker")
    run_worker()


def init_app(app: Flask) -> None:
    for command in (prestart, create_admin, set_admin, purge, reconcile, relay, worker):
        app.cli.add_command(command)
