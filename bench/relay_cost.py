"""The relay's and PostgreSQL's cost per order, over an order's life in PostgreSQL.

    python bench/relay_cost.py [--rate 200] [--seconds 20] [--rounds 3] [VARIANT ...]
    [BENCH_RELAY_ROOT=CHECKOUT] python bench/relay_cost.py --batch-cost EVENTS BATCHES

A VARIANT is ``label`` or ``label:KEY=VALUE,KEY=VALUE`` (relay settings, as ``FLASK_<KEY>``
variables) or ``label@ROOT:...`` (the relay of another checkout, e.g. ``main@/work/main``); the
variants run in turn, round after round (interleaved A/B). Default: one variant, ``current``.

Each run starts the real ``flask relay`` process (its command, in a child that also counts its
SQL statements, commits, pool checkouts (a pre-ping each) and wakeups), creates orders through
the service's own code (``create_order``, in this process) at a steady rate, waits until the relay
has published them, then gives each order its processed mark (``mark_processed``, the worker's
statement) and purges the published events (``housekeeping.purge``, retention 0). PostgreSQL's
CPU is its backends' user + system time from ``/proc``, told apart by ``application_name``
(``PGAPPNAME``); commits are ``pg_stat_database.xact_commit`` of the bench's database; WAL bytes
are the server's ``pg_current_wal_lsn`` difference (the whole server: other databases' writes
count too). Latency: the event's ``published_at`` minus its order's ``created_at``.

``--batch-cost`` measures one thing in process instead: the CPU time of ``Relay.publish_batch``
on EVENTS pending events, BATCHES times (median, minimum); under ``valgrind --tool=callgrind``,
two runs with different BATCHES give the instructions of a batch by difference.

The relay publishes to RabbitMQ names of the bench's own (nothing consumes them; purged after
each run). Writes ``bench/results/<date>-relay.json`` and prints a table.
Names: BENCH_DATABASE, BENCH_REDIS_URL, BENCH_NAMESPACE (as bench/run.py).
"""

import argparse
import atexit
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, os.environ.get("BENCH_RELAY_ROOT", str(ROOT)))  # the child: the checkout measured

import pika  # noqa: E402
import psycopg2  # noqa: E402
from psycopg2.sql import SQL, Identifier  # noqa: E402

DATABASE = os.environ.get("BENCH_DATABASE", "orders_bench")
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
EVENTS_NAMESPACE = os.environ.get("BENCH_NAMESPACE", "bench.")
SETTINGS = {
    "SQLALCHEMY_DATABASE_URI": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "RABBITMQ_URL": RABBITMQ_URL,
    "EVENTS_NAMESPACE": EVENTS_NAMESPACE,
    "JWT_SECRET_KEY": "bench-secret-that-is-long-enough-for-hs256-0123456789",
    "LOG_LEVEL": "WARNING",
    # Nothing processes the orders while they are published: the reconciler must not enqueue them.
    "RECONCILE_AFTER_SECONDS": 86400,
    "OUTBOX_RETENTION_HOURS": 0,  # the purge phase deletes every published event
}
TICKS = os.sysconf("SC_CLK_TCK")
# A backend reports its transactions to pg_stat_database once idle, at most once a second.
STATS_FLUSH_SECONDS = 2.5


def log(message):
    print(f"[relay_cost {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


# --- counting SQL in a process ------------------------------------------------------------------


def count_statements(engine, counts):
    """Count ``engine``'s statements (by first word), commits, rollbacks and checkouts in ``counts``."""
    from sqlalchemy import event

    @event.listens_for(engine, "before_cursor_execute")
    def statement(conn, cursor, sql, parameters, context, executemany):
        counts["statements"] += 1
        counts[sql.lstrip().split(None, 1)[0].upper()] += 1

    @event.listens_for(engine, "commit")
    def commit(conn):
        counts["commits"] += 1

    @event.listens_for(engine, "rollback")
    def rollback(conn):
        counts["rollbacks"] += 1

    @event.listens_for(engine.pool, "checkout")
    def checkout(dbapi_connection, record, proxy):
        counts["checkouts"] += 1


def relay_child(output):
    """``flask relay`` as its command runs it, counting its SQL and its wakeups into ``output``."""
    from orders_app import create_app, lifecycle, tracing
    from orders_app.cli import relay_with_periodic_tasks
    from orders_app.extensions import db

    counts = Counter()
    wait = lifecycle.GracefulStop.wait

    def counted_wait(self, timeout, *readers):
        readable = wait(self, timeout, *readers)
        counts["waits"] += 1
        counts["wakeups"] += bool(readable)
        return readable

    lifecycle.GracefulStop.wait = counted_wait
    atexit.register(lambda: Path(output).write_text(json.dumps(counts)))
    app = create_app()
    with app.app_context():
        count_statements(db.engine, counts)
        tracing.setup("orders-relay")
        relay = relay_with_periodic_tasks()
        relay.stop.install()
        if profile := os.environ.get("BENCH_RELAY_PROFILE"):  # a CPU-time profile of the whole run
            import cProfile

            profiler = cProfile.Profile(time.process_time)
            atexit.register(lambda: profiler.dump_stats(profile))
            profiler.runcall(relay.run)
        else:
            relay.run()


# --- the run ------------------------------------------------------------------------------------


def admin(statement, *parameters, database="postgres"):
    connection = psycopg2.connect(f"postgresql://postgres@127.0.0.1:5432/{database}")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(statement, parameters)
        rows = cursor.fetchall() if cursor.description else None
    connection.close()
    return rows


def prepare():
    admin(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(DATABASE)))
    env = {**os.environ, "PYTHON_DOTENV_DISABLED": "1", "DATABASE_URL": DATABASE_URL,
           "JWT_SECRET_KEY": SETTINGS["JWT_SECRET_KEY"]}  # fmt: skip
    subprocess.run([sys.executable, "-m", "flask", "--app", "orders_app", "prestart"], cwd=ROOT, env=env,
                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    admin("INSERT INTO users (email, password_hash) VALUES ('relay@example.com', 'x')", database=DATABASE)


def purge_queues():
    from orders_app.events.topology import Topology

    topology = Topology.from_config({"EVENTS_NAMESPACE": EVENTS_NAMESPACE})
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    topology.declare(channel)
    channel.queue_purge(topology.queue)
    connection.close()


def backends(application):
    rows = admin(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND application_name = %s", DATABASE, application
    )
    return [pid for (pid,) in rows]


def server_state():
    [(commits, rollbacks, lsn)] = admin(
        "SELECT xact_commit, xact_rollback, pg_current_wal_lsn()::text FROM pg_stat_database "
        "WHERE datname = %s",
        DATABASE,
    )
    return commits, rollbacks, lsn


def wal_bytes(since, until):
    return int(admin("SELECT pg_wal_lsn_diff(%s, %s)", until, since)[0][0])


def phase(work, applications):
    """Run ``work()``; return its PostgreSQL cost: the named backends' CPU, commits, WAL bytes."""
    before = {application: backends(application) for application in applications}
    before_cpu = {pid: cpu_seconds(pid) for pids in before.values() for pid in pids}
    commits, rollbacks, lsn = server_state()
    result = work()
    time.sleep(STATS_FLUSH_SECONDS)
    cpu = {}
    for application in applications:  # a backend that ended meanwhile is not counted
        pids = set(before[application]) | set(backends(application))
        cpu[application] = sum(cpu_seconds(pid) - before_cpu.get(pid, 0.0) for pid in pids)
    commits_after, rollbacks_after, lsn_after = server_state()
    return result, {
        "pg_cpu_seconds": sum(cpu.values()),
        "pg_cpu_seconds_by_process": cpu,
        "commits": commits_after - commits,
        "rollbacks": rollbacks_after - rollbacks,
        "wal_bytes": wal_bytes(lsn, lsn_after),
    }


def per_order(cost, orders):
    """A phase's PostgreSQL cost, and the same per order."""
    return {
        **cost,
        "per_order_cpu_ms": 1000 * cost["pg_cpu_seconds"] / orders,
        "commits_per_order": cost["commits"] / orders,
        "wal_bytes_per_order": cost["wal_bytes"] / orders,
    }


def create_at_rate(viewer, rate, seconds, counts):
    """Create orders through ``create_order`` at ``rate`` a second for ``seconds``; return their ids."""
    from orders_app.orders.service import create_order

    items = [{"name": "Bread", "quantity": 2, "price": Decimal("10.50")}]
    ids, start = [], time.monotonic()
    counts.clear()
    for n in range(int(rate * seconds)):
        delay = start + n / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        order, _ = create_order(viewer, items)
        ids.append(order["id"])
    return ids


def run(variant, rate, seconds, workdir):
    from sqlalchemy import text

    from orders_app import create_app
    from orders_app.auth.identity import Viewer
    from orders_app.extensions import db
    from orders_app.housekeeping import purge
    from orders_app.orders.service import mark_processed

    label, root, settings = variant
    purge_queues()
    admin("DELETE FROM outbox_events; DELETE FROM orders", database=DATABASE)
    counts_file = Path(workdir) / f"relay-counts-{label}.json"
    env = {
        **os.environ,
        "PYTHON_DOTENV_DISABLED": "1",
        "BENCH_RELAY_ROOT": root,
        "PGAPPNAME": "bench-relay",
        **{f"FLASK_{key}": str(value) for key, value in {**SETTINGS, **settings}.items()},
    }
    child = subprocess.Popen([sys.executable, __file__, "--relay-child", str(counts_file)], cwd=root, env=env)
    deadline = time.monotonic() + 30
    while len(backends("bench-relay")) < 2:  # its session (after the first sweep) and its listener
        if time.monotonic() > deadline or child.poll() is not None:
            raise RuntimeError("the relay did not start")
        time.sleep(0.05)
    time.sleep(0.5)

    os.environ["PGAPPNAME"] = "bench-creator"
    app = create_app({**SETTINGS, "LOG_LEVEL": "WARNING"})
    creator_counts = Counter()
    with app.app_context():
        count_statements(db.engine, creator_counts)
        viewer = Viewer(db.session.execute(text("SELECT id FROM users")).scalar_one())
        db.session.commit()  # its backend exists before it is measured
        relay_cpu = cpu_seconds(child.pid)

        def create_and_publish():
            created = create_at_rate(viewer, rate, seconds, creator_counts)
            deadline = time.monotonic() + 120
            pending = "SELECT count(*) FROM outbox_events WHERE published_at IS NULL"
            while admin(pending, database=DATABASE)[0][0]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the relay did not publish every event")
                time.sleep(0.05)
            return created

        ids, cost = phase(create_and_publish, ["bench-creator", "bench-relay"])
        relay_cpu = cpu_seconds(child.pid) - relay_cpu
        create_counts = dict(creator_counts)
        creator_pids = backends("bench-creator")
        [latency] = admin(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY ms), max(ms) FROM ("
            "SELECT extract(epoch FROM e.published_at - o.created_at) * 1000 AS ms FROM outbox_events e "
            "JOIN orders o ON o.id = (e.payload->>'order_id')::uuid) AS latencies",
            database=DATABASE,
        )
        child.send_signal(signal.SIGTERM)
        child.wait(timeout=60)
        relay_counts = json.loads(counts_file.read_text())

        creator_counts.clear()
        _, mark_cost = phase(lambda: [mark_processed(i) for i in ids], ["bench-creator"])
        mark_counts = dict(creator_counts)
        creator_counts.clear()
        purged, purge_cost = phase(purge, ["bench-creator"])
        purge_counts = dict(creator_counts)
        db.session.remove()
        db.engine.dispose()
    del os.environ["PGAPPNAME"]
    orders = len(ids)
    return {
        "label": label,
        "root": root,
        "settings": settings,
        "orders": orders,
        "creator_backends": len(creator_pids),
        "relay_cpu_ms_per_event": 1000 * relay_cpu / orders,
        "relay_counts": relay_counts,
        "relay_per_event": {k: v / orders for k, v in relay_counts.items()},
        "events_per_batch": orders / max(relay_counts.get("UPDATE", 0), 1),
        "create_counts_per_order": {k: v / orders for k, v in create_counts.items()},
        "create_and_publish": {
            **per_order(cost, orders),
            "relay_backends_cpu_ms_per_order": 1000
            * cost["pg_cpu_seconds_by_process"]["bench-relay"]
            / orders,
            "creator_backend_cpu_ms_per_order": 1000
            * cost["pg_cpu_seconds_by_process"]["bench-creator"]
            / orders,
        },
        "mark": {**per_order(mark_cost, orders), "statements": mark_counts},
        "purge": {**per_order(purge_cost, orders), "deleted": purged, "statements": purge_counts},
        "latency_ms": {"p50": latency[0][0], "p99": latency[0][1], "max": float(latency[1])},
        "loadavg": os.getloadavg(),
    }


def summary(result):
    pg = result["create_and_publish"]
    return (
        f"{result['label']}: relay {result['relay_cpu_ms_per_event']:.3f} ms/event, "
        f"{result['events_per_batch']:.2f} events/batch, PostgreSQL: relay's backends "
        f"{pg['relay_backends_cpu_ms_per_order']:.3f}, "
        f"creator's {pg['creator_backend_cpu_ms_per_order']:.3f} ms/order, "
        f"{pg['commits_per_order']:.2f} commits/order; published after "
        f"p50 {result['latency_ms']['p50']:.1f} p99 {result['latency_ms']['p99']:.1f} ms; "
        f"load {result['loadavg'][0]:.2f}"
    )


def batch_cost(events, batches):
    """In this process: the CPU time of ``Relay.publish_batch`` on ``events`` pending events,
    ``batches`` times (the checkout given by BENCH_RELAY_ROOT); prints the median and minimum."""
    from sqlalchemy import text

    from orders_app import create_app
    from orders_app.events.relay import Relay
    from orders_app.events.topology import connect
    from orders_app.extensions import db

    prepare()
    purge_queues()
    app = create_app(SETTINGS)
    with app.app_context():
        relay, connection = Relay(), connect(app.config)
        channel = connection.channel()
        channel.confirm_delivery()
        samples = []
        for _ in range(batches):
            db.session.execute(
                text(
                    "INSERT INTO outbox_events (id, event_type, payload) SELECT gen_random_uuid(), "
                    "'new_order', jsonb_build_object('order_id', n) FROM generate_series(1, :events) AS n"
                ),
                {"events": events},
            )
            db.session.commit()
            started = time.process_time()
            assert relay.publish_batch(channel) == events
            samples.append(time.process_time() - started)
        connection.close()
        db.session.remove()
        db.engine.dispose()
    purge_queues()
    admin(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(DATABASE)))
    print(
        f"{os.environ.get('BENCH_RELAY_ROOT', ROOT)}: {batches} batches of {events}: CPU per batch "
        f"median {statistics.median(samples) * 1000:.3f} ms, minimum {min(samples) * 1000:.3f} ms"
    )


def parse_variant(text):
    label, _, settings = text.partition(":")
    label, _, root = label.partition("@")
    pairs = dict(pair.split("=", 1) for pair in settings.split(",") if pair)
    return label, root or str(ROOT), pairs


def main():
    if sys.argv[1:2] == ["--relay-child"]:
        return relay_child(sys.argv[2])
    if sys.argv[1:2] == ["--batch-cost"]:
        return batch_cost(int(sys.argv[2]), int(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", default=["current"])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", default=None)
    arguments = parser.parse_args()
    variants = [parse_variant(text) for text in arguments.variants]
    workdir = ROOT / "bench" / "results"
    prepare()
    results = []
    for round_number in range(arguments.rounds):
        for variant in variants:
            result = run(variant, arguments.rate, arguments.seconds, "/tmp")
            result["round"] = round_number
            results.append(result)
            log(summary(result))
    output = Path(arguments.output or workdir / f"{datetime.now(UTC):%Y-%m-%d}-relay.json")
    document = {"rate": arguments.rate, "seconds": arguments.seconds, "results": results}
    output.write_text(json.dumps(document, indent=1))
    admin(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(DATABASE)))
    log(f"wrote {output}")


if __name__ == "__main__":
    main()
