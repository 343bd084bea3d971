"""What an RQ worker costs per ``process_order`` job: CPU, Redis commands and round trips,
PostgreSQL statements and commits.

    python bench/worker_cost.py [N] [--rounds R] [--instructions] [--output FILE]

On a database, Redis db and names of its own (BENCH_DATABASE, BENCH_REDIS_URL, BENCH_NAMESPACE,
as ``make bench``), N orders are inserted unprocessed and their jobs enqueued with the service's
own ``enqueue_process_order``; processing takes no time (``PROCESSING_DELAY_SECONDS=0``). Each
round measures:

- ``burst``: a real ``flask worker`` process, stopped (SIGSTOP) while the N jobs are enqueued,
  then let go: its CPU (user + system, ``/proc``) and its PostgreSQL backend's, until every order
  is processed, and the database's commits and rollbacks (``pg_stat_database``), per job;
- ``trickle``: the same process running while the jobs arrive at TRICKLE_RATE a second;
- ``in_process``: the worker in this process (``make_worker``, burst mode, with the scheduler),
  its Redis connections' class wrapped to count commands and round trips (a pipeline is one),
  SQLAlchemy's events counting statements and pool checkouts (each one a pre-ping ``SELECT 1``);
  its CPU time (``time.process_time``) and its PostgreSQL backend's.

Then the idle worker's CPU a second (the scheduler thread polling, heartbeats). With
``--instructions`` the in-process run is also counted under callgrind (machine instructions per
job, which the machine's load does not move). Writes bench/results/<date>-worker.json.
"""

import collections
import functools
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from datetime import UTC, datetime
from pathlib import Path

import psycopg2
import redis
from run import (
    BIN,
    DATABASE,
    DATABASE_URL,
    ENV,
    REDIS_URL,
    ROOT,
    descendants,
    log,
    prepare_database,
    process,
    wait_until,
)

NO_DELAY = {"PROCESSING_DELAY_SECONDS": "0"}
os.environ.update(ENV, **NO_DELAY)

from sqlalchemy import event  # noqa: E402

from orders_app import create_app  # noqa: E402
from orders_app.config import Defaults  # noqa: E402
from orders_app.extensions import cache_redis, db  # noqa: E402
from orders_app.job_queue import enqueue_process_order, job_id  # noqa: E402
from orders_app.worker import make_worker  # noqa: E402

UNDER_CALLGRIND = "BENCH_UNDER_CALLGRIND"
TRICKLE_RATE = 200
IDLE_SECONDS = 20
JOB_CONFIG = {
    name: getattr(Defaults, name) for name in ("RQ_QUEUE", "JOB_TIMEOUT_SECONDS", "JOB_RETRY_INTERVALS")
}
OWN_TRANSACTIONS = 0
OWN_CONNECTION = None


class CountingConnection(redis.Connection):
    """A Redis connection counting, for all its instances, commands and round trips."""

    commands = 0
    round_trips = 0

    def send_command(self, *args, **kwargs):
        CountingConnection.commands += 1
        return super().send_command(*args, **kwargs)

    def pack_commands(self, commands):
        commands = list(commands)
        CountingConnection.commands += len(commands)
        return super().pack_commands(commands)

    def send_packed_command(self, command, check_health=True):
        CountingConnection.round_trips += 1
        return super().send_packed_command(command, check_health)


def sql(statement, parameters=()):
    """The rows of one statement on the bench database, in autocommit on this script's one
    connection (counted: the database's commits are the worker's and these)."""
    global OWN_CONNECTION, OWN_TRANSACTIONS
    if OWN_CONNECTION is None:
        OWN_CONNECTION = psycopg2.connect(DATABASE_URL)
        OWN_CONNECTION.autocommit = True
    OWN_TRANSACTIONS += 1
    with OWN_CONNECTION.cursor() as cursor:
        cursor.execute(statement, parameters)
        return cursor.fetchall() if cursor.description else []


def new_orders(count):
    """``count`` unprocessed orders of one user; their ids."""
    user = sql("SELECT id FROM users WHERE email = 'worker-bench@example.com'")
    if not user:
        user = sql(
            "INSERT INTO users (email, password_hash) VALUES ('worker-bench@example.com', 'x') RETURNING id"
        )
    rows = sql(
        "INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at) "
        'SELECT gen_random_uuid(), %s, \'[{"name": "Bread", "quantity": 2, "price": "10.50"}]\', '
        "21.00, 'PENDING', now(), now() FROM generate_series(1, %s) RETURNING id::text",
        (user[0][0], count),
    )
    return [order_id for (order_id,) in rows]


def unprocessed(order_ids):
    return sql(
        "SELECT count(*) FROM orders WHERE id = ANY(%s::uuid[]) AND processed_at IS NULL", (order_ids,)
    )[0][0]


def wait_processed(connection, order_ids, timeout=300):
    """Until the job of the last of ``order_ids`` finished (one worker runs them in order): read
    in Redis, so that waiting adds nothing to the database's commits."""
    finished = f"rq:finished:{JOB_CONFIG['RQ_QUEUE']}"
    last = job_id(order_ids[-1])
    wait_until(lambda: connection.zscore(finished, last) is not None, timeout=timeout, interval=0.05,
               what="every order processed")  # fmt: skip


def database_transactions():
    """Commits and rollbacks of the bench database so far, less this script's own transactions."""
    time.sleep(11)  # PostgreSQL 15 flushes an idle backend's statistics within 10 s
    sql("SELECT pg_stat_force_next_flush()")  # this connection's, at the end of this statement
    own = OWN_TRANSACTIONS
    commits, rollbacks = sql(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = %s", (DATABASE,)
    )[0]
    return commits - own, rollbacks


def cpu_seconds(pid):
    """CPU time so far of every thread of ``pid`` and of its children (RQ's scheduler is one), as
    the kernel's scheduler counts it (nanoseconds: finer than ``stat``'s ticks)."""
    tasks = [
        task
        for process in (pid, *descendants(pid))
        for task in Path(f"/proc/{process}/task").glob("*/schedstat")
    ]
    return sum(int(task.read_text().split()[0]) for task in tasks) / 1e9


def backend_pids():
    """PostgreSQL backends on the bench database other than this query's."""
    rows = sql("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (DATABASE,))
    return [pid for (pid,) in rows]


def enqueue(connection, order_ids, rate=None):
    """Each order's job, as the consumer enqueues it; at ``rate`` a second if given."""
    start = time.monotonic()
    for n, order_id in enumerate(order_ids):
        if rate is not None:
            time.sleep(max(0.0, start + n / rate - time.monotonic()))
        enqueue_process_order(JOB_CONFIG, connection, order_id, None)


def worker_process(workdir, tag):
    return process(
        [str(BIN / "flask"), "--app", "orders_app", "worker"], workdir / f"worker-{tag}.log", **NO_DELAY
    )


def process_run(connection, workdir, count, tag, trickle):
    """One ``flask worker`` process running ``count`` jobs: its CPU per job and its backend's."""
    others = set(backend_pids())
    with worker_process(workdir, tag) as worker:
        warm = new_orders(1)  # the worker's database connection exists, its imports are done
        enqueue(connection, warm)
        wait_processed(connection, warm, timeout=60)
        (backend,) = set(backend_pids()) - others
        orders = new_orders(count)
        commits, rollbacks = database_transactions()
        if not trickle:
            worker.send_signal(signal.SIGSTOP)
            enqueue(connection, orders)
        cpu, backend_cpu, started = cpu_seconds(worker.pid), cpu_seconds(backend), time.monotonic()
        if trickle:
            enqueue(connection, orders, rate=TRICKLE_RATE)
        else:
            worker.send_signal(signal.SIGCONT)
        wait_processed(connection, orders)
        cpu, backend_cpu = cpu_seconds(worker.pid) - cpu, cpu_seconds(backend) - backend_cpu
        elapsed = time.monotonic() - started
        commits_after, rollbacks_after = database_transactions()
    assert unprocessed(orders) == 0, "orders left unprocessed"
    return {
        "worker_cpu_ms_per_job": 1000 * cpu / count,
        "backend_cpu_ms_per_job": 1000 * backend_cpu / count,
        "commits_per_job": (commits_after - commits) / count,
        "rollbacks_per_job": (rollbacks_after - rollbacks) / count,
        "seconds": elapsed,
    }


def idle_cpu(workdir):
    """CPU a second of a worker with nothing to do, after its start."""
    with worker_process(workdir, "idle") as worker:
        time.sleep(5)
        cpu = cpu_seconds(worker.pid)
        time.sleep(IDLE_SECONDS)
        return 1000 * (cpu_seconds(worker.pid) - cpu) / IDLE_SECONDS


def counted_app():
    """The app, its cache's Redis connections counted, and counters of its SQL statements (by
    their first word) and pool checkouts."""
    app = create_app()
    statements, checkouts = collections.Counter(), collections.Counter()
    with app.app_context():
        cache_redis.client.connection_pool.connection_class = CountingConnection
        event.listen(
            db.engine, "before_cursor_execute", lambda *args: statements.update([args[2].split()[0]])
        )
        event.listen(db.engine.pool, "checkout", lambda *args: checkouts.update(["checkout"]))
    return app, statements, checkouts


def in_process_run(counted, count):
    """The worker in this process running ``count`` queued jobs (burst mode, with the scheduler)."""
    app, statements, checkouts = counted
    connection = redis.Redis.from_url(REDIS_URL, connection_class=CountingConnection)
    with app.app_context():
        warm = new_orders(1)
        enqueue(connection, warm)
        with open(os.devnull, "w") as devnull, redirect_stdout(devnull), redirect_stderr(devnull):
            make_worker(app.config, connection).work(burst=True, with_scheduler=True)
        orders = new_orders(count)
        enqueue(connection, orders)
        commits, rollbacks = database_transactions()
        statements.clear()
        checkouts.clear()
        CountingConnection.commands = CountingConnection.round_trips = 0
        (backend,) = backend_pids()
        worker = make_worker(app.config, connection)
        work = functools.partial(worker.work, burst=True, with_scheduler=True)
        cpu, backend_cpu = time.process_time(), cpu_seconds(backend)
        with open(os.devnull, "w") as devnull, redirect_stdout(devnull), redirect_stderr(devnull):
            # itertools.starmap: what callgrind collects in (nothing else here calls it)
            collections.deque(itertools.starmap(work, [()]), maxlen=0)
        cpu, backend_cpu = time.process_time() - cpu, cpu_seconds(backend) - backend_cpu
        commands, round_trips = CountingConnection.commands, CountingConnection.round_trips
        commits_after, rollbacks_after = database_transactions()
        db.engine.dispose()
    assert unprocessed(orders) == 0, "the in-process worker left orders unprocessed"
    return {
        "cpu_ms_per_job": 1000 * cpu / count,
        "backend_cpu_ms_per_job": 1000 * backend_cpu / count,
        "redis_commands_per_job": commands / count,
        "redis_round_trips_per_job": round_trips / count,
        "sql_statements_per_job": {name: n / count for name, n in sorted(statements.items())},
        "pool_checkouts_per_job": checkouts["checkout"] / count,
        "commits_per_job": (commits_after - commits) / count,
        "rollbacks_per_job": (rollbacks_after - rollbacks) / count,
    }


def instructions(count):
    """Machine instructions per job of the in-process run, under callgrind."""
    command = [
        "valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next",
        "--callgrind-out-file=/dev/null", sys.executable, __file__, str(count),
    ]  # fmt: skip
    run = subprocess.run(command, env={**os.environ, UNDER_CALLGRIND: "1"}, capture_output=True, text=True)
    collected = [line for line in run.stderr.splitlines() if "Collected :" in line]
    if run.returncode or not collected:
        sys.exit(f"callgrind failed:\n{run.stderr[-2000:]}")
    return int(collected[-1].split()[-1]) // count


def summary(runs):
    """Median and range of each number over the rounds."""
    result = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            result[key] = summary([run[key] for run in runs])
        else:
            values = [run[key] for run in runs]
            result[key] = {"median": round(statistics.median(values), 4), "min": round(min(values), 4),
                           "max": round(max(values), 4)}  # fmt: skip
    return result


def main():
    arguments = [argument for argument in sys.argv[1:] if not argument.startswith("--")]
    count = int(arguments[0]) if arguments else 2000
    rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
    if os.environ.get(UNDER_CALLGRIND):
        prepare_database()
        in_process_run(counted_app(), count)
        return
    workdir = Path(tempfile.mkdtemp(prefix="worker-cost-"))
    log(f"worker logs in {workdir}")
    prepare_database()
    counted = counted_app()
    connection = redis.Redis.from_url(REDIS_URL)
    runs = {"burst": [], "trickle": [], "in_process": []}
    for n in range(rounds):
        log(f"round {n + 1} of {rounds}: {count} jobs, load average {os.getloadavg()[0]:.2f}")
        runs["in_process"].append(in_process_run(counted, count))
        runs["burst"].append(process_run(connection, workdir, count, f"burst-{n}", trickle=False))
        runs["trickle"].append(process_run(connection, workdir, count, f"trickle-{n}", trickle=True))
        log(json.dumps({kind: results[-1] for kind, results in runs.items()}))
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "jobs_per_round": count,
        "rounds": rounds,
        "load_average": os.getloadavg(),
        **{kind: summary(results) for kind, results in runs.items()},
        "idle_worker_cpu_ms_per_second": idle_cpu(workdir),
    }
    if "--instructions" in sys.argv:
        results["in_process"]["instructions_per_job"] = instructions(min(count, 500))
    output = ROOT / "bench" / "results" / f"{datetime.now():%Y-%m-%d}-worker.json"
    if "--output" in sys.argv:
        output = Path(sys.argv[sys.argv.index("--output") + 1])
    output.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
