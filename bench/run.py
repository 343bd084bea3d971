"""make bench: throughput, latency and CPU of the service against a baseline measured in the same run.

Starts the stack the way production runs it (gunicorn + gevent, one worker per core, rate
limiting off) on a database, Redis db and RabbitMQ names of its own, seeds users and orders
(200 users sharing 30,000 orders, and two users with 1,000 and 200,000 orders for the listing
scenarios), and measures with wrk (2 threads, 64 connections, a warm-up then WRK_SECONDS per
run) every HTTP scenario ROUNDS times, interleaved with the baseline (bench/baseline_app.py,
same gunicorn configuration); each run also records the CPU time of the web workers. Then: the
same cache reads under `make run` (its runner relays every log line), the pipeline (relay ->
consumer -> workers), and cache reads during a login storm. Writes bench/results/<date>.json,
prints markdown tables and puts them into docs/performance.md (bench/report.py judges the targets and
writes the tables). ``python bench/run.py login_storm`` runs only the login storm (results in
bench/results/<date>-login_storm.json, docs/performance.md untouched).

Shorter runs while working on this script: BENCH_WRK_SECONDS=1 BENCH_ROUNDS=1.
"""

import json
import math
import os
import platform
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import pika
import psycopg2
import redis
from psycopg2.sql import SQL, Identifier

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from bench/: make the service importable

from report import (  # noqa: E402
    judge_pipeline,
    markdown,
    markdown_steady,
    pipeline_table,
    report,
    update_page,
)

from orders_app.config import Defaults  # noqa: E402
from orders_app.events.topology import Topology  # noqa: E402
from orders_app.orders.schemas import encode_cursor  # noqa: E402

BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent

# Two benches on one machine each take their own (BENCH_DATABASE, BENCH_REDIS_URL, BENCH_NAMESPACE).
DATABASE = os.environ.get("BENCH_DATABASE", "orders_bench")
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
EVENTS_NAMESPACE = os.environ.get("BENCH_NAMESPACE", "bench.")
CORES = os.cpu_count()

WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", 10))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 3))  # medians of 3: one noisy run cannot move them
WARMUP_SECONDS = 3
CONNECTIONS = 64
USERS = 200
ORDERS = 30_000
DEEP_USERS = {"1k": 1_000, "200k": 200_000}  # listing scenarios: a user with this many orders
PAGE_SIZE = 20
LATER_PAGE_AT = 0.9  # "a later page": the one holding the order this far down the user's list
DEEPEST_PAGE = Defaults.LIST_MAX_PAGE  # the deepest page a page number reaches (an OFFSET)
CACHED_ORDERS = 2_000
LATENCY_SAMPLES = 100
MAX_ERROR_RATIO = 0.001
# Logins per second per web worker during the storm: real argon2id hashes (~0.1 s of CPU each),
# well within what the cores can hash; cache reads on a few connections, so that their latency
# shows stalls of the event loop rather than the queue of a saturating load.
STORM_LOGINS_PER_WORKER_SECOND = 2
STORM_READ_CONNECTIONS = 8
STORM_USER = {"username": "storm@example.com", "password": "correct horse battery"}
ORDER_BODY = json.dumps({"items": [{"name": "Bread", "quantity": 2, "price": "10.50"}]})
SOCKET_ERRORS = ("connect", "read", "write", "timeout")  # as wrk counts them
# The steady-rate scenario: this mix (shares of the requests) at STEADY_LOAD × its capacity.
STEADY_MIX = {"get_cached": 0.70, "list_user": 0.15, "create": 0.10, "change_status": 0.05}
STEADY_PRICED_AS = {
    "get_cached": "get_cached",
    "list_user": "list_user",
    "create": "create",
    "change_status": "create",
}
STEADY_LOAD = 0.5
STEADY_SECONDS = int(os.environ.get("BENCH_STEADY_SECONDS", 60))
STEADY_CONNECTIONS = 512  # at most this many open; beyond, a request waits (and its wait counts)

ENV = {
    **os.environ,
    "PATH": f"{BIN}:{os.environ['PATH']}",
    "PYTHON_DOTENV_DISABLED": "1",
    "DATABASE_URL": DATABASE_URL,
    "REDIS_URL": REDIS_URL,
    "RABBITMQ_URL": RABBITMQ_URL,
    "JWT_SECRET_KEY": secrets.token_urlsafe(48),
    "FLASK_EVENTS_NAMESPACE": EVENTS_NAMESPACE,
    "FLASK_RATELIMIT_ENABLED": "false",
    "FLASK_JWT_ACCESS_TOKEN_EXPIRES": "7200",
    "WEB_CONCURRENCY": str(CORES),
}


class DeepUser(NamedTuple):
    user_id: int
    orders: int
    token: str


def log(message):
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def port_open(port):
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def ensure_wrk():
    if not shutil.which("wrk"):
        log("installing wrk (Debian package)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"], check=True)


@contextmanager
def process(command, logfile, **env):
    """A process of the stack, stopped with SIGTERM (gracefully) on exit."""
    with open(logfile, "w") as output:
        child = subprocess.Popen(
            command, cwd=ROOT, env={**ENV, **env}, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()


def wait_until(condition, timeout=60, interval=0.2, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except OSError:
            pass
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def http_ok(url):
    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def gunicorn(app, port, logfile, **env):
    command = [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", app]
    return process(command, logfile, GUNICORN_BIND=f"127.0.0.1:{port}", **env)


# --- processes ---------------------------------------------------------------------------------


def process_table():
    """``{pid: (parent pid, CPU seconds in user and system mode)}`` of every process, from /proc."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after the command, which may hold spaces
        except OSError:  # ended meanwhile
            continue
        table[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])))
    ticks = os.sysconf("SC_CLK_TCK")
    return {pid: (parent, cpu / ticks) for pid, (parent, cpu) in table.items()}


def workers_cpu_seconds(master_pid):
    """CPU time so far of a gunicorn master's workers (its children)."""
    return sum(cpu for parent, cpu in process_table().values() if parent == master_pid)


def descendants(pid):
    """Every live process below ``pid``."""
    children = {}
    for child, (parent, _) in process_table().items():
        children.setdefault(parent, []).append(child)
    found, pending = [], [pid]
    while pending:
        below = children.get(pending.pop(), [])
        found += below
        pending += below
    return found


# The servers' processes, by /proc/<pid>/comm; everything else the stack runs is below `make run`.
SERVER_COMMANDS = {
    "postgres": "PostgreSQL",
    "redis-server": "Redis",
    "beam.smp": "RabbitMQ",
    "erl_child_setup": "RabbitMQ",
    "epmd": "RabbitMQ",
    "inet_gethost": "RabbitMQ",
}
STACK_ROLES = ("web", "relay", "consumer", "worker", "dashboard", "runner", "PostgreSQL", "Redis", "RabbitMQ")


def role_of(pid):
    """Which process of the Procfile a process below `make run` belongs to, by its command line
    (each Procfile command execs its program); `make`, the shells, dotenv and the runner: "runner"."""
    try:
        words = [Path(word).name for word in Path(f"/proc/{pid}/cmdline").read_text().split("\0") if word]
    except OSError:
        return None
    for program, name in (("gunicorn", "web"), ("rq-dashboard", "dashboard")):
        if program in words:
            return name
    if "flask" in words and words[-1] in ("relay", "worker"):
        return words[-1]
    if words[-2:] == ["-m", "consumer"]:
        return "consumer"
    return "runner"


def stack_cpu(make_pid):
    """CPU seconds so far of every process of the stack, by role: the processes below `make run`
    and the servers' (all of their processes: on a quiet machine, this stack is all they serve)."""
    table = process_table()
    cpu = dict.fromkeys(STACK_ROLES, 0.0)
    for pid in [make_pid, *descendants(make_pid)]:
        if (name := role_of(pid)) and pid in table:
            cpu[name] += table[pid][1]
    for pid, (_, seconds) in table.items():
        with suppress(OSError):
            command = Path(f"/proc/{pid}/comm").read_text().strip()
            if command in SERVER_COMMANDS:
                cpu[SERVER_COMMANDS[command]] += seconds
    return cpu


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# --- data --------------------------------------------------------------------------------------


def prepare_database():
    connection = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(Identifier(DATABASE)))
    connection.close()
    subprocess.run([str(BIN / "flask"), "--app", "orders_app", "prestart"], cwd=ROOT, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    redis.Redis.from_url(REDIS_URL).flushdb()


def insert_orders(cursor, first_user, users, count):
    """``count`` orders, one a second back from now, owned in turn by ``users`` users from
    ``first_user`` on; already processed, as old orders are (unprocessed, the relay's reconciler
    would queue every one of them again and the workers would be busy with them)."""
    at = "now() - n * interval '1 second'"
    cursor.execute(
        "INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at, processed_at) "
        f"SELECT gen_random_uuid(), %s + n %% %s, %s::jsonb, 21.00, 'PENDING', {at}, {at}, {at} "
        "FROM generate_series(1, %s) AS n",
        (first_user, users, json.dumps(json.loads(ORDER_BODY)["items"]), count),
    )


def seed():
    """USERS users sharing ORDERS orders, a user per DEEP_USERS entry with that many orders, and an
    access token for each; returns ``(orders, tokens, deep_users)``."""
    connection = psycopg2.connect(DATABASE_URL)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, password_hash) "
            "SELECT 'bench' || n || '@example.com', 'not-a-hash' FROM generate_series(1, %s) AS n",
            (USERS,),
        )
        insert_orders(cursor, 1, USERS, ORDERS)
        cursor.execute("SELECT id, user_id FROM orders")
        orders = [(str(order_id), user_id) for order_id, user_id in cursor.fetchall()]
        deep_ids = {}
        for name, count in DEEP_USERS.items():
            cursor.execute(
                "INSERT INTO users (email, password_hash) VALUES (%s, 'not-a-hash') RETURNING id",
                (f"bench-{name}@example.com",),
            )
            deep_ids[name] = cursor.fetchone()[0]
            insert_orders(cursor, deep_ids[name], 1, count)
    # As autovacuum would have done to a table in steady state (statistics, visibility map).
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.close()
    tokens = mint_tokens([*range(1, USERS + 1), *deep_ids.values()])
    deep_users = {
        name: DeepUser(user_id, DEEP_USERS[name], tokens.pop(user_id)) for name, user_id in deep_ids.items()
    }
    random.Random(7).shuffle(orders)
    return orders, tokens, deep_users


def mint_tokens(user_ids):
    """Access tokens signed with the bench secret (logging in 200 times would measure argon2)."""
    script = (
        "import json, sys\n"
        "from flask_jwt_extended import create_access_token\n"
        "from orders_app import create_app\n"
        "with create_app().app_context():\n"
        "    ids = json.loads(sys.argv[1])\n"
        "    print(json.dumps({i: create_access_token(identity=str(i)) for i in ids}))\n"
    )
    out = subprocess.run([sys.executable, "-c", script, json.dumps(list(user_ids))], cwd=ROOT, env=ENV,
                         check=True, capture_output=True, text=True).stdout  # fmt: skip
    return {int(user_id): token for user_id, token in json.loads(out.strip().splitlines()[-1]).items()}


def request_file(directory, name, lines):
    path = Path(directory) / f"{name}.tsv"
    path.write_text("".join(f"{method}\t{target}\t{token}\n" for method, target, token in lines))
    return path


def request_lines(orders, tokens):
    """The request lines (method, path, token) of each scenario that needs no running service."""
    return {
        "baseline": [("GET", "/", "")],
        "health": [("GET", "/health", "")],
        "get_cached": [("GET", f"/orders/{order}/", tokens[user]) for order, user in orders[:CACHED_ORDERS]],
        "get_db": [("GET", f"/orders/{order}/", tokens[user]) for order, user in orders],
        "list_user": [("GET", f"/orders/user/{user}/", token) for user, token in tokens.items()],
        "create": [("POST", "/orders/", token) for token in tokens.values()],
    }


# --- wrk ---------------------------------------------------------------------------------------


def wrk(url, requests, seconds, connections=CONNECTIONS, limit=0):
    env = {**os.environ, "WRK_REQUESTS": str(requests), "WRK_BODY": ORDER_BODY, "WRK_LIMIT": str(limit)}
    command = [
        "wrk",
        "-t2",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(BENCH / "rotate.lua"),
        url,
    ]
    output = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


def wrk_with_cpu(url, requests, master_pid):
    """A measured wrk run, with the CPU time the gunicorn workers spent per request meanwhile."""
    before = workers_cpu_seconds(master_pid)
    result = wrk(url, requests, WRK_SECONDS)
    cpu_seconds = workers_cpu_seconds(master_pid) - before
    result["cpu_ms_per_request"] = round(cpu_seconds * 1000 / max(result["requests"], 1), 3)
    return result


def warm_cache(base_url, orders, tokens):
    """Read every order of the get_cached set once, so that the measured run only hits."""

    def read(order):
        order_id, user_id = order
        request = urllib.request.Request(
            f"{base_url}/orders/{order_id}/", headers={"Authorization": f"Bearer {tokens[user_id]}"}
        )
        urllib.request.urlopen(request, timeout=10).close()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(read, orders))


def parse_wrk(output):
    try:
        return _parse_wrk(output)
    except (AttributeError, ValueError) as error:
        raise RuntimeError(f"cannot read wrk's output:\n{output}") from error


def _parse_wrk(output):
    def duration_ms(text):
        value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}[unit]

    requests, duration = re.search(r"(\d+) requests in ([\d.]+\w+),", output).groups()
    requests = int(requests)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    socket_errors = dict(zip(SOCKET_ERRORS, map(int, errors.groups()) if errors else [0] * 4, strict=True))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0
    hits, responses = map(int, re.search(r"CACHE_HITS (\d+) (\d+)", output).groups())
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": duration_ms(re.search(r"^\s+50%\s+(\S+)\s*$", output, re.M).group(1)),
        "p99_ms": duration_ms(re.search(r"^\s+99%\s+(\S+)\s*$", output, re.M).group(1)),
        "requests": requests,
        "seconds": duration_ms(duration) / 1000,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "cache_hit_ratio": round(hits / responses, 4) if responses else None,
        "valid": requests > 0 and sum(socket_errors.values()) + non_2xx <= MAX_ERROR_RATIO * requests,
    }


# --- HTTP scenarios ----------------------------------------------------------------------------


def list_path(user_id, **query):
    return f"/orders/user/{user_id}/?" + "&".join(
        f"{k}={v}" for k, v in {"page_size": PAGE_SIZE, **query}.items()
    )


def later_page(user):
    """``(path, about)`` of a page deep in a user's list, by cursor: the page after page N, the one
    holding the order at LATER_PAGE_AT of the list, starts after N's last order, whose cursor is
    written here as the service writes it (a page number cannot reach that deep)."""
    page = math.ceil(LATER_PAGE_AT * user.orders / PAGE_SIZE)
    [(created_at, order_id)] = query(
        "SELECT created_at, id FROM orders WHERE user_id = %s "
        "ORDER BY created_at DESC, id DESC OFFSET %s LIMIT 1",
        (user.user_id, page * PAGE_SIZE - 1),
    )
    cursor = encode_cursor(created_at, order_id)
    deepest = min(DEEPEST_PAGE, math.ceil(user.orders / PAGE_SIZE))
    about = {
        "orders": user.orders,
        "later_page": page + 1,
        "later_page_by": "cursor",
        "deepest_page": deepest,
    }
    return list_path(user.user_id, cursor=quote(cursor, safe="")), about


def http_scenarios(workdir, orders, tokens, deep_users):
    """Every HTTP scenario ROUNDS times, interleaved; returns ``(runs, listing)``: each scenario's
    wrk results, and which later page of each deep user's list was measured, and how."""
    port, baseline_port = free_port(), free_port()
    cached = orders[:CACHED_ORDERS]
    lines = request_lines(orders, tokens)
    cache = redis.Redis.from_url(REDIS_URL)
    with (
        gunicorn("wsgi:app", port, Path(workdir) / "web.log") as service,
        # Never traced: with OTEL_* set, the service's requests are, and the baseline stays the same.
        gunicorn(
            "bench.baseline_app:app",
            baseline_port,
            Path(workdir) / "baseline.log",
            OTEL_TRACES_EXPORTER="none",
        ) as baseline,
    ):
        url, baseline_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{baseline_port}"
        wait_until(lambda: http_ok(f"{url}/health/ready"), what="the service")
        wait_until(lambda: http_ok(baseline_url), what="the baseline")
        listing = {}
        for name, user in deep_users.items():
            lines[f"list_{name}_first"] = [("GET", list_path(user.user_id), user.token)]
            path, listing[name] = later_page(user)
            lines[f"list_{name}_later"] = [("GET", path, user.token)]
            deepest = list_path(user.user_id, page=listing[name]["deepest_page"])
            lines[f"list_{name}_deepest_page"] = [("GET", deepest, user.token)]
        files = {name: request_file(workdir, name, requests) for name, requests in lines.items()}
        runs = {name: [] for name in files}
        for round_number in range(1, ROUNDS + 1):
            for name, requests in files.items():
                target, master = (baseline_url, baseline.pid) if name == "baseline" else (url, service.pid)
                wrk(target, requests, WARMUP_SECONDS)  # warms the pools
                if name == "get_cached":
                    warm_cache(target, cached, tokens)
                if name == "get_db":
                    for key in cache.scan_iter("order:*", count=1000):
                        cache.delete(key)
                result = wrk_with_cpu(target, requests, master)
                log(f"round {round_number} {name}: {result}")
                runs[name].append(result)
    return runs, listing


# --- make run ----------------------------------------------------------------------------------


@contextmanager
def make_run(port, logfile):
    """`make run` as a newcomer starts it in a terminal (its own process group; .env read, the
    exported settings winning), serving on ``port``. Stopped with SIGTERM to the group; raises
    unless every process it started has exited and freed its port."""
    ports = {name: free_port() for name in ("RELAY_METRICS_PORT", "CONSUMER_METRICS_PORT",
                                            "WORKER_METRICS_PORT", "RQ_DASHBOARD_PORT")}  # fmt: skip
    env = {**ENV, **{name: str(number) for name, number in ports.items()}}
    env.update(GUNICORN_BIND=f"127.0.0.1:{port}", PROCESSING_DELAY_SECONDS="0")
    for inherited in ("PYTHON_DOTENV_DISABLED", "MAKEFLAGS", "MAKELEVEL", "MFLAGS"):  # not in a terminal
        env.pop(inherited, None)
    with open(logfile, "w") as output:
        make = subprocess.Popen(["make", "run", f"VENV={BIN.parent}"], cwd=ROOT, env=env, stdout=output,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip

    def serving():
        """The web ready, and the other processes started: each serves its port once it runs."""
        if make.poll() is not None:
            raise RuntimeError(f"make run exited; see {logfile}")
        return http_ok(f"http://127.0.0.1:{port}/health/ready") and all(map(port_open, ports.values()))

    try:
        wait_until(serving, timeout=120, what="make run")
        yield make
    finally:
        started = descendants(make.pid)
        with suppress(ProcessLookupError):  # the whole group ended already
            os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=60)
        wait_until(
            lambda: not any(map(alive, started)) and not any(map(port_open, [port, *ports.values()])),
            timeout=60,
            what="every process of make run to exit",
        )


def make_run_scenario(workdir, orders, tokens):
    """/health and get_cached once each under `make run`, whose runner re-prints every log line."""
    clear_backlog()  # the create scenario's orders: not processed while this measures
    lines = request_lines(orders, tokens)
    files = {
        name: request_file(workdir, f"make-run-{name}", lines[name]) for name in ("health", "get_cached")
    }
    port = free_port()
    runs = {}
    with make_run(port, Path(workdir) / "make-run.log"):
        url = f"http://127.0.0.1:{port}"
        for name, requests in files.items():
            wrk(url, requests, WARMUP_SECONDS)
            if name == "get_cached":
                warm_cache(url, orders[:CACHED_ORDERS], tokens)
            runs[name] = wrk(url, requests, WRK_SECONDS)
            log(f"make run {name}: {runs[name]}")
    return runs


# --- a steady rate -----------------------------------------------------------------------------


def mix_capacity(summary):
    """The requests/s the STEADY_MIX would reach at saturation, from each kind's own throughput
    (a mix spends each kind's share of a second at that kind's cost); a status change has no
    scenario of its own and is priced as a create (both a write and a commit)."""
    return 1 / sum(
        share / summary[STEADY_PRICED_AS[name]]["requests_per_second"] for name, share in STEADY_MIX.items()
    )


def steady_requests(orders, tokens):
    """Each kind of the mix's requests, as bench/steady.py takes them; status changes set orders
    outside the cached set PAID, each once."""
    lines = request_lines(orders, tokens)
    patch = json.dumps({"status": "PAID"})
    return {
        "get_cached": {"requests": [[*line, None] for line in lines["get_cached"]]},
        "list_user": {"requests": [[*line, None] for line in lines["list_user"]]},
        "create": {"requests": [[*line, ORDER_BODY] for line in lines["create"]]},
        "change_status": {
            "requests": [
                ["PATCH", f"/orders/{order}/", tokens[user], patch] for order, user in orders[CACHED_ORDERS:]
            ],
            "once": True,
        },
    }


def steady_scenario(workdir, orders, tokens):
    """The mix at STEADY_LOAD × its capacity, sent at that rate whatever the latency
    (bench/steady.py), under `make run`: the pipeline processes the mix's new orders meanwhile.
    The capacity is measured in the same conditions first (``mix_capacity``), and the pipeline
    left to finish what those runs created."""
    port = free_port()
    clear_backlog()  # the earlier scenarios' orders: not processed while this measures
    with make_run(port, Path(workdir) / "steady-make-run.log"):
        url = f"http://127.0.0.1:{port}"
        capacity = mix_capacity(each_kinds_throughput(url, workdir, orders, tokens))
        wait_until(lambda: not query(UNPROCESSED)[0][0], timeout=600, interval=0.25, what="processing")
        requests = steady_requests(orders, tokens)
        spec = {
            "url": url,
            "rate": round(STEADY_LOAD * capacity),
            "seconds": STEADY_SECONDS,
            "warmup_seconds": WARMUP_SECONDS,
            "connections": STEADY_CONNECTIONS,
            "mix": {name: {"weight": share, **requests[name]} for name, share in STEADY_MIX.items()},
        }
        spec_file = Path(workdir) / "steady.json"
        spec_file.write_text(json.dumps(spec))
        output = subprocess.run(
            [sys.executable, str(BENCH / "steady.py"), str(spec_file)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    result = {"capacity_per_second": round(capacity, 1), "load": STEADY_LOAD, **json.loads(output)}
    log(f"steady rate: {result}")
    return result


def each_kinds_throughput(url, workdir, orders, tokens):
    """Each kind of the mix's throughput at ``url``, one wrk run each (cached reads from a warm cache)."""
    lines = request_lines(orders, tokens)
    summary = {}
    for name in dict.fromkeys(STEADY_PRICED_AS.values()):  # creating last: its orders load the pipeline
        requests = request_file(workdir, f"capacity-{name}", lines[name])
        wrk(url, requests, WARMUP_SECONDS)
        if name == "get_cached":
            warm_cache(url, orders[:CACHED_ORDERS], tokens)
        summary[name] = wrk(url, requests, WRK_SECONDS)
        log(f"capacity {name}: {summary[name]}")
    return summary


# --- pipeline ----------------------------------------------------------------------------------


def post_order(base_url, token):
    request = urllib.request.Request(
        f"{base_url}/orders/", data=ORDER_BODY.encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["id"], time.time()


def query(sql, parameters=()):
    """The rows of one read-only query on the bench database."""
    connection = psycopg2.connect(DATABASE_URL)
    with connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        rows = cursor.fetchall()
    connection.close()
    return rows


UNPROCESSED = "SELECT count(*) FROM orders WHERE processed_at IS NULL"


def processed_times(order_ids):
    rows = query(
        "SELECT id::text, extract(epoch FROM processed_at) FROM orders WHERE id = ANY(%s::uuid[])",
        (list(order_ids),),
    )
    return {order_id: epoch and float(epoch) for order_id, epoch in rows}


@contextmanager
def pipeline(workdir, port, workers, delay):
    """The whole stack: web, relay, consumer and ``workers`` RQ workers."""
    logs, settings = Path(workdir), {"PROCESSING_DELAY_SECONDS": str(delay)}
    flask = [str(BIN / "flask"), "--app", "orders_app"]
    with ExitStack() as stack:
        stack.enter_context(gunicorn("wsgi:app", port, logs / f"pipeline-web-{delay}.log", **settings))
        stack.enter_context(process([*flask, "relay"], logs / f"relay-{delay}.log", **settings))
        stack.enter_context(
            process([sys.executable, "-m", "consumer"], logs / f"consumer-{delay}.log", **settings)
        )
        for n in range(workers):
            stack.enter_context(process([*flask, "worker"], logs / f"worker-{delay}-{n}.log", **settings))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health/ready"), what="the service")
        time.sleep(3)  # relay, consumer and workers connected
        yield f"http://127.0.0.1:{port}"


def clear_backlog():
    """Start the pipeline empty: the orders the HTTP scenarios created are not part of its
    measurement, neither their events nor their processing (the reconciler would enqueue every
    order left unprocessed, ahead of the pipeline's own)."""
    connection = psycopg2.connect(DATABASE_URL)
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE outbox_events SET published_at = now() WHERE published_at IS NULL")
        cursor.execute("UPDATE orders SET processed_at = now() WHERE processed_at IS NULL")
    connection.close()
    redis.Redis.from_url(REDIS_URL).flushdb()
    topology = Topology.from_config({"EVENTS_NAMESPACE": EVENTS_NAMESPACE})
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    topology.declare(channel)  # as the service does: purging a queue that does not exist closes the channel
    for queue in (topology.queue, topology.dead_letter_queue):
        channel.queue_purge(queue)
    connection.close()


def pipeline_latency(base_url, tokens):
    """POST -> processed on an idle system: one order at a time."""
    created = {}
    for n in range(LATENCY_SAMPLES):
        order_id, responded = post_order(base_url, tokens[n % len(tokens)])
        created[order_id] = responded
        wait_until(lambda oid=order_id: processed_times([oid]).get(oid), timeout=30, interval=0.005)
        time.sleep(0.05)
    done = processed_times(created)
    latencies = sorted((done[oid] - responded) * 1000 for oid, responded in created.items())
    return {
        "samples": len(latencies),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
    }


def pipeline_throughput(base_url, requests, make_pid):
    """Orders created by wrk as fast as the web answers for WRK_SECONDS, then processed, under
    `make run` (one worker): does the pipeline keep up with the web, and what does an order cost
    the whole stack? created/s = orders / (last created - first created), drained/s = orders /
    (last processed - first created), on the server's clock (wrk's own count leaves out the
    requests still in flight when it stops); CPU per order = each role's CPU from wrk's start
    until the last order is processed, ÷ the orders."""
    (since,) = query("SELECT now()")[0]
    cpu_before = stack_cpu(make_pid)
    run = wrk(base_url, requests, WRK_SECONDS)
    pending = "SELECT count(*) FROM orders WHERE processed_at IS NULL AND created_at >= %s"
    wait_until(lambda: query(pending, (since,))[0][0] == 0, timeout=600, interval=0.25, what="processing")
    cpu_after = stack_cpu(make_pid)
    count, create_seconds, drain_seconds = query(
        "SELECT count(*), extract(epoch FROM max(created_at) - min(created_at)), "
        "extract(epoch FROM max(processed_at) - min(created_at)) FROM orders WHERE created_at >= %s",
        (since,),
    )[0]
    cpu_ms = {name: round((cpu_after[name] - cpu_before[name]) * 1000 / count, 3) for name in STACK_ROLES}
    return {
        "orders": count,
        "workers": 1,
        "create_seconds": round(float(create_seconds), 2),
        "drain_seconds": round(float(drain_seconds), 2),
        "created_per_second": round(count / float(create_seconds), 1),
        "drained_per_second": round(count / float(drain_seconds), 1),
        "cpu_ms_per_order": {**cpu_ms, "total": round(sum(cpu_ms.values()), 3)},
        "wrk": run,
    }


def pipeline_workers(workdir, tokens):
    """Workers with a 2 s job: how close to workers / delay orders a second."""
    workers, delay = CORES, 2
    with pipeline(workdir, free_port(), workers=workers, delay=delay) as base_url:
        count = 10 * workers
        order_ids = [post_order(base_url, tokens[n % len(tokens)])[0] for n in range(count)]
        wait_until(
            lambda: all(processed_times(order_ids).values()), timeout=600, interval=0.25, what="processing"
        )
        times = sorted(processed_times(order_ids).values())
    sustained = (count - workers) / (times[-1] - times[workers - 1])
    return {
        "workers": workers,
        "delay_seconds": delay,
        "orders": count,
        "orders_per_second": round(sustained, 3),
        "ideal_per_second": workers / delay,
        "ratio_to_ideal": round(sustained / (workers / delay), 3),
    }


def pipeline_scenarios(workdir, orders, tokens):
    token_list = list(tokens.values())
    create = request_file(workdir, "pipeline-create", request_lines(orders, tokens)["create"])
    results = {}
    clear_backlog()
    port = free_port()
    with make_run(port, Path(workdir) / "pipeline-make-run.log") as make:
        base_url = f"http://127.0.0.1:{port}"
        results["latency"] = pipeline_latency(base_url, token_list)
        log(f"pipeline latency: {results['latency']}")
        results["throughput"] = pipeline_throughput(base_url, create, make.pid)
        log(f"pipeline throughput: {results['throughput']}")
    results["workers"] = pipeline_workers(workdir, token_list)
    log(f"pipeline workers: {results['workers']}")
    return results


# --- cache reads during a login storm -----------------------------------------------------------


def post_json(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


@contextmanager
def login_storm(base_url, per_second):
    """POST /token at a steady ``per_second`` until the block ends; yields its counters."""
    stats = {"latencies": [], "errors": 0}
    stop = threading.Event()

    def login():
        started = time.perf_counter()
        try:
            post_json(f"{base_url}/token", STORM_USER)
            stats["latencies"].append(time.perf_counter() - started)
        except OSError:
            stats["errors"] += 1

    def run():
        with ThreadPoolExecutor(64) as pool:
            next_at = time.perf_counter()
            while not stop.is_set():
                pool.submit(login)
                next_at += 1 / per_second
                stop.wait(max(0.0, next_at - time.perf_counter()))

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join()


def login_storm_scenario(workdir, orders, tokens):
    """get_cached (wrk on STORM_READ_CONNECTIONS) alone, then during a storm of logins, ROUNDS times each."""
    port, cached = free_port(), orders[:CACHED_ORDERS]
    requests = request_file(workdir, "storm_get_cached", request_lines(orders, tokens)["get_cached"])
    per_second = STORM_LOGINS_PER_WORKER_SECOND * CORES
    runs = {"quiet": [], "storm": []}
    with gunicorn("wsgi:app", port, Path(workdir) / "storm-web.log"):
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: http_ok(f"{url}/health/ready"), what="the service")
        post_json(f"{url}/register/", {"email": STORM_USER["username"], "password": STORM_USER["password"]})
        wrk(url, requests, WARMUP_SECONDS)
        warm_cache(url, cached, tokens)
        for round_number in range(1, ROUNDS + 1):
            runs["quiet"].append(wrk(url, requests, WRK_SECONDS, STORM_READ_CONNECTIONS))
            with login_storm(url, per_second) as stats:
                result = wrk(url, requests, WRK_SECONDS, STORM_READ_CONNECTIONS)
            latencies = sorted(stats["latencies"]) or [0.0]
            result["logins"] = {
                "per_second": round(len(stats["latencies"]) / WRK_SECONDS, 1),
                "errors": stats["errors"],
                "p50_ms": round(statistics.median(latencies) * 1000, 1),
                "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1),
            }
            runs["storm"].append(result)
            log(f"round {round_number} login storm: quiet {runs['quiet'][-1]}, storm {result}")
    return {
        "logins_per_second_asked": per_second,
        "read_connections": STORM_READ_CONNECTIONS,
        "runs": runs,
        **{
            name: {
                "requests_per_second": round(statistics.median(r["requests_per_second"] for r in rs), 1),
                "p50_ms": round(statistics.median(r["p50_ms"] for r in rs), 2),
                "p99_ms": round(statistics.median(r["p99_ms"] for r in rs), 2),
            }
            for name, rs in runs.items()
        },
    }


def main():
    ensure_wrk()
    started = time.monotonic()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{CORES} cores, {memory_gib:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        "command": "make bench",
        "wrk": {
            "connections": CONNECTIONS,
            "seconds": WRK_SECONDS,
            "warmup_seconds": WARMUP_SECONDS,
            "rounds": ROUNDS,
            "page_size": PAGE_SIZE,
        },
    }
    with tempfile.TemporaryDirectory(prefix="orders-bench-") as workdir:
        log(f"logs in {workdir}; preparing database {DATABASE}")
        prepare_database()
        orders, tokens, deep_users = seed()
        log(f"seeded {USERS} users sharing {len(orders)} orders, and users with {list(DEEP_USERS.values())}")
        if sys.argv[1:] == ["login_storm"]:
            storm = login_storm_scenario(workdir, orders, tokens)
            output = BENCH / "results" / f"{meta['date']}-login_storm.json"
            output.write_text(json.dumps({"meta": meta, "login_storm": storm}, indent=2) + "\n")
            log(f"results in {output.relative_to(ROOT)}")
            return
        if sys.argv[1:] == ["pipeline"]:
            pipeline_results = pipeline_scenarios(workdir, orders, tokens)
            output = BENCH / "results" / f"{meta['date']}-pipeline.json"
            output.write_text(
                json.dumps({"meta": meta, "pipeline": judge_pipeline(pipeline_results)}, indent=2) + "\n"
            )
            print("\n".join(pipeline_table(judge_pipeline(pipeline_results))))
            log(f"results in {output.relative_to(ROOT)}")
            return
        if sys.argv[1:] == ["steady"]:
            steady = steady_scenario(workdir, orders, tokens)
            output = BENCH / "results" / f"{meta['date']}-steady.json"
            output.write_text(json.dumps({"meta": meta, "steady": steady}, indent=2) + "\n")
            print(markdown_steady(steady))
            log(f"results in {output.relative_to(ROOT)}")
            return
        http, listing = http_scenarios(workdir, orders, tokens, deep_users)
        steady = steady_scenario(workdir, orders, tokens)
        make_run_runs = make_run_scenario(workdir, orders, tokens)
        pipeline_results = pipeline_scenarios(workdir, orders, tokens)
        pipeline_results["login_storm"] = login_storm_scenario(workdir, orders, tokens)
    meta["minutes"] = round((time.monotonic() - started) / 60, 1)
    results = report(meta, http, listing, make_run_runs, pipeline_results, steady)
    output = BENCH / "results" / f"{meta['date']}.json"
    output.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    update_page(table)
    print(table)
    log(f"results in {output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
