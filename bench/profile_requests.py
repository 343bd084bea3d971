"""Where a request's time goes, in process (no network, no gunicorn): ``app.wsgi_app`` called
directly with requests built beforehand.

    python bench/profile_requests.py [get_cached|get_db|list_user|create|health] [N]
    python bench/profile_requests.py [scenario] [N] --instructions

The first form prints the CPU time per request and the functions with the most cumulative CPU
time (cProfile). The second counts the machine instructions the N requests execute (valgrind's
callgrind, counting only inside the measured requests) and prints them per request: a count that does
not move with the machine's load, so two versions of the code compare to a fraction of a percent
on a busy machine where timings vary by 20 %. Uses the database `make bench` seeded (orders_bench,
Redis db 14); logging stays at INFO, its lines discarded after they are formatted. With
``OTEL_TRACES_EXPORTER`` set, requests are traced as in a web worker (docs/operations.md, Traces).
"""

import cProfile
import itertools
import os
import pstats
import re
import subprocess
import sys
import time
from collections import deque
from contextlib import closing, redirect_stderr

import psycopg2
import redis
from run import DATABASE_URL, ENV, REDIS_URL, USERS, mint_tokens  # also makes the service importable

os.environ.update(ENV)

from werkzeug.test import EnvironBuilder  # noqa: E402

from orders_app import create_app, tracing  # noqa: E402

UNDER_CALLGRIND = "BENCH_UNDER_CALLGRIND"
ORDER_BODY = b'{"items": [{"name": "Bread", "quantity": 2, "price": "10.50"}]}'


def requests(scenario, orders, tokens, count):
    """``count`` WSGI environments of ``scenario``, built before anything is measured."""
    environs = []
    for n in range(count):
        order_id, user = orders[n % len(orders)]
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        if scenario in ("get_cached", "get_db"):
            builder = EnvironBuilder(f"/orders/{order_id}/", headers=headers)
        elif scenario == "list_user":
            builder = EnvironBuilder(f"/orders/user/{user}/", headers=headers)
        elif scenario == "create":
            builder = EnvironBuilder(
                "/orders/", method="POST", data=ORDER_BODY, content_type="application/json", headers=headers
            )
        else:
            builder = EnvironBuilder("/health")
        environs.append((order_id, builder.get_environ()))
    return environs


def main():
    arguments = [argument for argument in sys.argv[1:] if argument != "--instructions"]
    scenario = arguments[0] if arguments else "get_cached"
    count = int(arguments[1]) if len(arguments) > 1 else 2000
    if "--instructions" in sys.argv and not os.environ.get(UNDER_CALLGRIND):
        return count_instructions(scenario, count)
    connection = psycopg2.connect(DATABASE_URL)
    with connection.cursor() as cursor:
        # The users who share the orders, not the listing scenarios' users with thousands each.
        cursor.execute(
            "SELECT id::text, user_id FROM orders WHERE user_id <= %s ORDER BY id LIMIT 500", (USERS,)
        )
        orders = cursor.fetchall()
    tokens = mint_tokens(sorted({user for _, user in orders}))
    tracing.setup("orders-web")  # as a web worker does: traces on if OTEL_TRACES_EXPORTER says so
    app = create_app()
    cache = redis.Redis.from_url(REDIS_URL)

    def call(order_id, environ):
        if scenario == "get_db":
            cache.delete(f"order:{order_id}")
        with closing(app.wsgi_app(environ, lambda status, headers, exc_info=None: None)) as response:
            for _chunk in response:
                pass

    def run(requests):
        """Each request through ``itertools.starmap``: what callgrind counts (nothing else uses it)."""
        deque(itertools.starmap(call, requests), maxlen=0)

    with open(os.devnull, "w") as devnull, redirect_stderr(devnull):  # log lines formatted, then dropped
        for request in requests(scenario, orders, tokens, len(orders)):  # warm: pools, the cache
            call(*request)
        measured = requests(scenario, orders, tokens, count)
        if os.environ.get(UNDER_CALLGRIND):
            return run(measured)
        started = time.process_time()
        run(measured)
        cpu_ms = (time.process_time() - started) / count * 1000
        profiler = cProfile.Profile(time.process_time)
        profiler.runcall(run, requests(scenario, orders, tokens, count))
    print(f"{scenario}: {cpu_ms:.3f} ms of CPU per request, in process")
    pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(35)


def count_instructions(scenario, count):
    """Run this script again under callgrind, collecting inside the measured loop only."""
    command = [
        "valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=starmap_next",
        "--callgrind-out-file=/dev/null", sys.executable, *sys.argv,
    ]  # fmt: skip
    run = subprocess.run(command, env={**os.environ, UNDER_CALLGRIND: "1"}, capture_output=True, text=True)
    collected = re.search(r"Collected : (\d+)", run.stderr)
    if run.returncode or not collected:
        sys.exit(f"callgrind failed:\n{run.stderr[-2000:]}")
    print(f"{scenario}: {int(collected[1]) // count} instructions per request, in process")


if __name__ == "__main__":
    main()
