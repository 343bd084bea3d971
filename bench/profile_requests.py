"""Where a request's time goes: cProfile over in-process requests (no network, no gunicorn).

    python bench/profile_requests.py [get_cached|get_db|list_user|create] [N]

Uses the database `make bench` seeded (orders_bench, Redis db 14). Prints the time per request
and the functions with the most cumulative time.
"""

import cProfile
import os
import pstats
import sys
import time

import psycopg2
import redis
from run import DATABASE_URL, ENV, REDIS_URL, USERS, mint_tokens  # also makes the service importable

os.environ.update({**ENV, "FLASK_LOG_LEVEL": "WARNING"})

from orders_app import create_app  # noqa: E402


def main():
    scenario = sys.argv[1] if len(sys.argv) > 1 else "get_cached"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    connection = psycopg2.connect(DATABASE_URL)
    with connection.cursor() as cursor:
        # The users who share the orders, not the listing scenarios' users with thousands each.
        cursor.execute(
            "SELECT id::text, user_id FROM orders WHERE user_id <= %s ORDER BY random() LIMIT 500", (USERS,)
        )
        orders = cursor.fetchall()
    tokens = mint_tokens(sorted({user for _, user in orders}))
    client = create_app().test_client()
    body = {"items": [{"name": "Bread", "quantity": 2, "price": "10.50"}]}

    def call(n):
        order_id, user = orders[n % len(orders)]
        headers = {"Authorization": f"Bearer {tokens[user]}"}
        if scenario == "get_db":
            redis.Redis.from_url(REDIS_URL).delete(f"order:{order_id}")
        if scenario in ("get_cached", "get_db"):
            return client.get(f"/orders/{order_id}/", headers=headers)
        if scenario == "list_user":
            return client.get(f"/orders/user/{user}/", headers=headers)
        return client.post("/orders/", json=body, headers=headers)

    for n in range(len(orders)):
        call(n)  # warm: pools, and the cache for get_cached
    started = time.perf_counter()
    for n in range(count):
        call(n)
    print(f"{scenario}: {(time.perf_counter() - started) / count * 1000:.3f} ms per request, in process")
    profiler = cProfile.Profile()
    profiler.runcall(lambda: [call(n) for n in range(count)])
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)


if __name__ == "__main__":
    main()
