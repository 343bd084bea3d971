"""make bench: throughput and latency of the service against a baseline measured in the same run.

Starts the stack the way production runs it (gunicorn + gevent, one worker per core, rate
limiting off) on a database, Redis db and RabbitMQ names of its own, seeds users and orders,
and measures with wrk (2 threads, 64 connections, a warm-up then WRK_SECONDS per run), every
HTTP scenario ROUNDS times, interleaved with the baseline (bench/baseline_app.py, same gunicorn
configuration). Then the pipeline: relay -> consumer -> workers, and cache reads during a
login storm. Writes bench/results/<date>.json, prints a markdown table and puts it into
README.md. ``python bench/run.py login_storm`` runs only the login storm (results in
bench/results/<date>-login_storm.json, README untouched).
"""

import json
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
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pika
import psycopg2
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from bench/: make the service importable

from orders_app.events.topology import Topology  # noqa: E402

BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent

DATABASE = "orders_bench"
DATABASE_URL = f"postgresql://postgres@127.0.0.1:5432/{DATABASE}"
REDIS_URL = "redis://127.0.0.1:6379/14"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/%2F"
EVENTS_NAMESPACE = "bench."
CORES = os.cpu_count()

WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", 10))
WARMUP_SECONDS = 3
ROUNDS = 2
USERS = 200
ORDERS = 30_000
CACHED_ORDERS = 2_000
PIPELINE_ORDERS = 2_000
LATENCY_SAMPLES = 100
MAX_ERROR_RATIO = 0.001
# Logins per second per web worker during the storm: real argon2id hashes (~0.1 s of CPU each),
# well within what the cores can hash; cache reads on a few connections, so that their latency
# shows stalls of the event loop rather than the queue of a saturating load.
STORM_LOGINS_PER_WORKER_SECOND = 2
STORM_READ_CONNECTIONS = 8
STORM_USER = {"username": "storm@example.com", "password": "correct horse battery"}
ORDER_BODY = json.dumps({"items": [{"name": "Bread", "quantity": 2, "price": "10.50"}]})
TARGETS = {  # ratio to the baseline's requests/s, measured in the same run
    "get_cached": 0.5,
    "list_user": 0.25,
    "create": 0.15,
}

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


def log(message):
    print(f"[bench {datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


# --- data --------------------------------------------------------------------------------------


def prepare_database():
    connection = psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")  # a constant name
    connection.close()
    subprocess.run([str(BIN / "flask"), "--app", "orders_app", "prestart"], cwd=ROOT, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    redis.Redis.from_url(REDIS_URL).flushdb()


def seed():
    """USERS users, ORDERS orders spread over them, and an access token per user."""
    connection = psycopg2.connect(DATABASE_URL)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (email, password_hash) "
            "SELECT 'bench' || n || '@example.com', 'not-a-hash' FROM generate_series(1, %s) AS n",
            (USERS,),
        )
        cursor.execute(
            "INSERT INTO orders (id, user_id, items, total_price, status, created_at, updated_at) "
            "SELECT gen_random_uuid(), 1 + n %% %s, %s::jsonb, 21.00, 'PENDING', "
            "now() - n * interval '1 second', now() - n * interval '1 second' "
            "FROM generate_series(1, %s) AS n",
            (USERS, json.dumps(json.loads(ORDER_BODY)["items"]), ORDERS),
        )
        cursor.execute("SELECT id, user_id FROM orders")
        orders = [(str(order_id), user_id) for order_id, user_id in cursor.fetchall()]
    # As autovacuum would have done to a table in steady state (statistics, visibility map).
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    connection.close()
    tokens = mint_tokens(range(1, USERS + 1))
    random.Random(7).shuffle(orders)
    return orders, tokens


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


# --- wrk ---------------------------------------------------------------------------------------


def wrk(url, requests, seconds, connections=64, limit=0):
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

    requests = int(re.search(r"(\d+) requests in", output).group(1))
    socket_errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0
    hits, responses = map(int, re.search(r"CACHE_HITS (\d+) (\d+)", output).groups())
    errors = socket_errors + non_2xx
    return {
        "requests_per_second": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
        "p50_ms": duration_ms(re.search(r"^\s+50%\s+(\S+)\s*$", output, re.M).group(1)),
        "p99_ms": duration_ms(re.search(r"^\s+99%\s+(\S+)\s*$", output, re.M).group(1)),
        "requests": requests,
        "non_2xx": non_2xx,
        "socket_errors": socket_errors,
        "cache_hit_ratio": round(hits / responses, 4) if responses else None,
        "valid": errors <= MAX_ERROR_RATIO * max(requests, 1),
    }


def http_scenarios(workdir, orders, tokens):
    port, baseline_port = free_port(), free_port()
    cached = orders[:CACHED_ORDERS]
    lines = {
        "baseline": [("GET", "/", "")],
        "health": [("GET", "/health", "")],
        "get_cached": [("GET", f"/orders/{order}/", tokens[user]) for order, user in cached],
        "get_db": [("GET", f"/orders/{order}/", tokens[user]) for order, user in orders],
        "list_user": [("GET", f"/orders/user/{user}/", token) for user, token in tokens.items()],
        "create": [("POST", "/orders/", token) for token in tokens.values()],
    }
    files = {name: request_file(workdir, name, requests) for name, requests in lines.items()}
    cache = redis.Redis.from_url(REDIS_URL)
    results = {name: [] for name in files}
    with (
        gunicorn("wsgi:app", port, Path(workdir) / "web.log"),
        gunicorn("bench.baseline_app:app", baseline_port, Path(workdir) / "baseline.log"),
    ):
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health/ready"), what="the service")
        wait_until(lambda: http_ok(f"http://127.0.0.1:{baseline_port}/"), what="the baseline")
        for round_number in range(1, ROUNDS + 1):
            for name, requests in files.items():
                url = f"http://127.0.0.1:{baseline_port if name == 'baseline' else port}"
                wrk(url, requests, WARMUP_SECONDS)  # warms the pools
                if name == "get_cached":
                    warm_cache(url, cached, tokens)
                if name == "get_db":
                    for key in cache.scan_iter("order:*", count=1000):
                        cache.delete(key)
                result = wrk(url, requests, WRK_SECONDS)
                log(f"round {round_number} {name}: {result}")
                results[name].append(result)
    return results


# --- pipeline ----------------------------------------------------------------------------------


def post_order(base_url, token):
    request = urllib.request.Request(
        f"{base_url}/orders/", data=ORDER_BODY.encode(), method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())["id"], time.time()


def processed_times(order_ids):
    connection = psycopg2.connect(DATABASE_URL)
    with connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT id::text, extract(epoch FROM processed_at) FROM orders WHERE id = ANY(%s::uuid[])",
            (list(order_ids),),
        )
        rows = {order_id: epoch and float(epoch) for order_id, epoch in cursor.fetchall()}
    connection.close()
    return rows


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
    """Start the pipeline empty: the create scenario's events are not part of its measurement."""
    connection = psycopg2.connect(DATABASE_URL)
    with connection, connection.cursor() as cursor:
        cursor.execute("UPDATE outbox_events SET published_at = now() WHERE published_at IS NULL")
    connection.close()
    redis.Redis.from_url(REDIS_URL).flushdb()
    topology = Topology.from_config({"EVENTS_NAMESPACE": EVENTS_NAMESPACE})
    connection = pika.BlockingConnection(pika.URLParameters(RABBITMQ_URL))
    channel = connection.channel()
    topology.declare(channel)  # as the service does: purging a queue that does not exist closes the channel
    for queue in (topology.queue, topology.dead_letter_queue):
        channel.queue_purge(queue)
    connection.close()


def pipeline_scenarios(workdir, tokens):
    token_list = list(tokens.values())
    results = {}
    clear_backlog()
    with pipeline(workdir, free_port(), workers=CORES, delay=0) as base_url:
        # Latency on an idle system: one order at a time.
        created = {}
        for n in range(LATENCY_SAMPLES):
            order_id, responded = post_order(base_url, token_list[n % len(token_list)])
            created[order_id] = responded
            wait_until(lambda oid=order_id: processed_times([oid]).get(oid), timeout=30, interval=0.005)
            time.sleep(0.05)
        done = processed_times(created)
        latencies = sorted((done[oid] - responded) * 1000 for oid, responded in created.items())
        results["latency"] = {
            "samples": len(latencies),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 2),
        }
        log(f"pipeline latency: {results['latency']}")
        # Throughput: PIPELINE_ORDERS orders as fast as possible, until all are processed.
        started = time.time()
        with ThreadPoolExecutor(32) as pool:
            posted = pool.map(
                lambda n: post_order(base_url, token_list[n % len(token_list)]), range(PIPELINE_ORDERS)
            )
            order_ids = [order_id for order_id, _ in posted]
        created_seconds = time.time() - started
        wait_until(
            lambda: all(processed_times(order_ids).values()), timeout=600, interval=0.25, what="processing"
        )
        finished = max(processed_times(order_ids).values())
        results["throughput"] = {
            "orders": PIPELINE_ORDERS,
            "workers": CORES,
            "create_seconds": round(created_seconds, 2),
            "total_seconds": round(finished - started, 2),
            "orders_per_second": round(PIPELINE_ORDERS / (finished - started), 1),
        }
        log(f"pipeline throughput: {results['throughput']}")
    workers, delay = CORES, 2
    with pipeline(workdir, free_port(), workers=workers, delay=delay) as base_url:
        count = 10 * workers
        order_ids = [post_order(base_url, token_list[n % len(token_list)])[0] for n in range(count)]
        wait_until(
            lambda: all(processed_times(order_ids).values()), timeout=600, interval=0.25, what="processing"
        )
        times = sorted(processed_times(order_ids).values())
        sustained = (count - workers) / (times[-1] - times[workers - 1])
        results["workers"] = {
            "workers": workers,
            "delay_seconds": delay,
            "orders": count,
            "orders_per_second": round(sustained, 3),
            "ideal_per_second": workers / delay,
            "ratio_to_ideal": round(sustained / (workers / delay), 3),
        }
        log(f"pipeline with {workers} workers: {results['workers']}")
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
    requests = request_file(
        workdir, "storm_get_cached", [("GET", f"/orders/{o}/", tokens[u]) for o, u in cached]
    )
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


# --- report ------------------------------------------------------------------------------------


def summarise(http):
    baseline_rps = statistics.median(r["requests_per_second"] for r in http["baseline"])
    baseline_p50 = statistics.median(r["p50_ms"] for r in http["baseline"])
    summary = {}
    for name, runs in http.items():
        rps = statistics.median(r["requests_per_second"] for r in runs)
        summary[name] = {
            "requests_per_second": round(rps, 1),
            "ratio_to_baseline": round(rps / baseline_rps, 3),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
            "p50_ratio_to_baseline": round(statistics.median(r["p50_ms"] for r in runs) / baseline_p50, 2),
            "valid": all(r["valid"] for r in runs),
        }
    return summary


def markdown(summary, pipeline_results, meta):
    lines = [
        f"Measured {meta['date']} on {meta['machine']} with `{meta['command']}` "
        f"(wrk -t2 -c64, {WRK_SECONDS} s per run after a {WARMUP_SECONDS} s warm-up, {ROUNDS} runs each, "
        "medians; baseline = a ten-line Flask app on the same gunicorn + gevent configuration).",
        "",
        "| scenario | requests/s | × baseline | target | p50 ms | p99 ms | valid |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        target = f"≥ {TARGETS[name]}×" if name in TARGETS else ""
        if name == "get_cached":
            target += f"; p50 ≤ 3× baseline ({row['p50_ratio_to_baseline']}×)"
        lines.append(
            f"| {name} | {row['requests_per_second']:.0f} | {row['ratio_to_baseline']:.2f} | {target} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {'yes' if row['valid'] else 'NO'} |"
        )
    latency, throughput, workers = (pipeline_results[k] for k in ("latency", "throughput", "workers"))
    storm = pipeline_results["login_storm"]
    lines += [
        "",
        "| pipeline | result | target |",
        "|---|---|---|",
        f"| POST → processed, one at a time, delay 0 | p50 {latency['p50_ms']} ms, "
        f"p99 {latency['p99_ms']} ms ({latency['samples']} orders) | p50 ≤ 50 ms, p99 ≤ 250 ms |",
        f"| {throughput['orders']} orders at once, delay 0, {throughput['workers']} workers | "
        f"{throughput['orders_per_second']} orders/s ({throughput['total_seconds']} s; created in "
        f"{throughput['create_seconds']} s) | |",
        f"| {workers['workers']} workers, delay {workers['delay_seconds']} s | "
        f"{workers['orders_per_second']} orders/s = {workers['ratio_to_ideal']} × the ideal "
        f"{workers['ideal_per_second']} | ≥ 0.9 × ideal |",
        f"| get_cached p99 on {STORM_READ_CONNECTIONS} connections during a login storm "
        f"({storm['logins_per_second_asked']} logins/s asked) | "
        f"{storm['storm']['p99_ms']} ms (without the storm {storm['quiet']['p99_ms']} ms) | about the same |",
    ]
    return "\n".join(lines)


def update_readme(table):
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        readme.write_text(f"{before}{start}\n{table}\n{end}{after}")


def main():
    ensure_wrk()
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{CORES} cores, {memory_gib:.0f} GiB, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()}",
        "command": "make bench",
    }
    with tempfile.TemporaryDirectory(prefix="orders-bench-") as workdir:
        log(f"logs in {workdir}; preparing database {DATABASE}")
        prepare_database()
        orders, tokens = seed()
        log(f"seeded {USERS} users and {len(orders)} orders")
        if sys.argv[1:] == ["login_storm"]:
            storm = login_storm_scenario(workdir, orders, tokens)
            output = BENCH / "results" / f"{meta['date']}-login_storm.json"
            output.write_text(json.dumps({"meta": meta, "login_storm": storm}, indent=2) + "\n")
            log(f"results in {output.relative_to(ROOT)}")
            return
        http = http_scenarios(workdir, orders, tokens)
        pipeline_results = pipeline_scenarios(workdir, tokens)
        pipeline_results["login_storm"] = login_storm_scenario(workdir, orders, tokens)
    summary = summarise(http)
    table = markdown(summary, pipeline_results, meta)
    output = BENCH / "results" / f"{meta['date']}.json"
    results = {"meta": meta, "summary": summary, "runs": http, "pipeline": pipeline_results}
    output.write_text(json.dumps(results, indent=2) + "\n")
    update_readme(table)
    print(table)
    log(f"results in {output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
