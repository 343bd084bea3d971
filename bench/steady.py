"""A constant-rate (open-loop) load generator: requests are sent at a fixed rate whatever the
latency, and each one's latency is measured from the time it was scheduled to be sent.

    python bench/steady.py SPEC.json

A closed loop (wrk: each connection sends its next request when the last one is answered)
slows down with the server, so a stall delays the requests that would have measured it
("coordinated omission"). Here the n-th request is due at ``n / rate`` seconds: a request that
waits for a free connection, or for this process's event loop, counts that wait. Debian has no
wrk2; this needs only gevent, which the service already uses.

SPEC is JSON: ``url``, ``rate`` (requests/s), ``seconds`` (measured), ``warmup_seconds`` (sent
at the same rate, not measured), ``connections`` (at most this many open), ``mix``: for each
kind of request, ``{"weight": share, "requests": [[method, path, token, body], ...]}``; a kind
with ``"once": true`` uses each of its requests once (a status change cannot be made twice).
Prints the results as JSON: per kind and overall, the count, errors, p50, p99, p99.9 and max
in milliseconds, and how late this process sent (its own lag, which the latencies include).
"""

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

import gevent  # noqa: E402
from gevent.lock import BoundedSemaphore  # noqa: E402
from gevent.pool import Group  # noqa: E402

TIMEOUT_SECONDS = 10  # an unanswered request counts as an error after this


class Connections:
    """Keep-alive connections, at most ``limit`` open; a request waits for one when all are busy."""

    def __init__(self, url, limit):
        address = urlsplit(url)
        self.host, self.port = address.hostname, address.port
        self.slots = BoundedSemaphore(limit)
        self.idle = []

    def send(self, method, path, token, body):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        with self.slots:
            if self.idle:  # the most recently used: the least likely to have been closed by the server
                try:
                    return self._exchange(self.idle.pop(), method, path, body, headers)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    pass  # closed by the server while idle (keep-alive timeout): once more, on a new one
            return self._exchange(self._connect(), method, path, body, headers)

    def _exchange(self, connection, method, path, body, headers):
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
        except Exception:
            connection.close()
            raise
        self.idle.append(connection)
        return response.status

    def _connect(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT_SECONDS)


def percentile(ordered, share):
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)] if ordered else None


def summary(latencies, errors):
    ordered = sorted(latencies)
    quantiles = {"p50_ms": 0.5, "p99_ms": 0.99, "p99_9_ms": 0.999, "max_ms": 1.0}
    return {
        "requests": len(ordered) + errors,
        "errors": errors,
        **{
            name: round(percentile(ordered, share) * 1000, 2) if ordered else None
            for name, share in quantiles.items()
        },
    }


def run(spec):
    rate, warmup = spec["rate"], spec["warmup_seconds"]
    mix = spec["mix"]
    names = list(mix)
    total = int(rate * (warmup + spec["seconds"]))
    kinds = random.Random(0).choices(names, weights=[mix[name]["weight"] for name in names], k=total)
    sources = {
        name: iter(kind["requests"]) if kind.get("once") else itertools.cycle(kind["requests"])
        for name, kind in mix.items()
    }
    connections = Connections(spec["url"], spec["connections"])
    latencies = {name: [] for name in names}
    errors = dict.fromkeys(names, 0)
    lag = []

    def send(name, request, due, measured):
        try:
            ok = 200 <= connections.send(*request) < 300
        except (OSError, http.client.HTTPException):
            ok = False
        if measured:
            if ok:
                latencies[name].append(time.monotonic() - due)
            else:
                errors[name] += 1

    group = Group()
    start = time.monotonic() + 0.1
    for number, name in enumerate(kinds):
        due = start + number / rate
        if (wait := due - time.monotonic()) > 0:
            gevent.sleep(wait)
        lag.append(time.monotonic() - due)
        request = next(sources[name], None)
        if request is None:  # a kind used once ran out: counted as an error, not silently skipped
            errors[name] += number / rate >= warmup
            continue
        group.spawn(send, name, request, due, number / rate >= warmup)
    sent_in = time.monotonic() - start
    group.join(timeout=TIMEOUT_SECONDS * 2)
    group.kill()
    measured = lag[int(rate * warmup) :]
    return {
        "rate_asked": rate,
        "rate_sent": round((total - 1) / sent_in, 1),  # from the first send to the last
        "seconds": spec["seconds"],
        "warmup_seconds": warmup,
        "send_lag_ms": {
            "p99": round(percentile(sorted(measured), 0.99) * 1000, 2),
            "max": round(max(measured) * 1000, 2),
        },
        "all": summary([value for name in names for value in latencies[name]], sum(errors.values())),
        "kinds": {name: summary(latencies[name], errors[name]) for name in names},
    }


if __name__ == "__main__":
    with open(sys.argv[1]) as spec_file:
        print(json.dumps(run(json.load(spec_file))))
