"""Password hashing in the web process (gevent) keeps the worker's other connections served."""

import json
import subprocess
import sys

import pytest

from support.commands import process_env
from support.settings import ROOT

pytestmark = pytest.mark.system

# A gevent worker's situation: a greenlet that should wake every 5 ms, while another logs in.
SCRIPT = """
from gevent import monkey

monkey.patch_all()
import json, sys, time

import gevent

sys.path.insert(0, "tests")
from support.settings import make_app
from orders_app.auth.passwords import hash_password, verify_password

app = make_app(PASSWORD_HASH_TIME_COST=3, PASSWORD_HASH_MEMORY_COST=65536)
ticks = []


def ticker():
    while True:
        gevent.sleep(0.005)
        ticks.append(time.perf_counter())


def logins():
    with app.app_context():
        for _ in range(3):
            assert verify_password(hash_password("correct horse"), "correct horse")


ticking = gevent.spawn(ticker)
gevent.sleep(0.05)
started = time.perf_counter()
gevent.spawn(logins).join()
finished = time.perf_counter()
ticking.kill()
print(json.dumps({"seconds": finished - started, "ticks": sum(started < t < finished for t in ticks)}))
"""


def last_json_line(script):
    """Run ``script`` in a Python of its own (it patches itself with gevent); its last line, as JSON."""
    command = [sys.executable, "-c", script]
    output = subprocess.run(command, cwd=ROOT, env=process_env(), capture_output=True, text=True, timeout=60)
    assert output.returncode == 0, output.stderr
    return json.loads(output.stdout.strip().splitlines()[-1])


def test_hashing_does_not_stall_the_event_loop():
    measured = last_json_line(SCRIPT)
    # Six hashes (~1 s): without the thread pool the loop does not turn once until they are done;
    # with it, it keeps turning (~200 times on an idle machine, far fewer on two busy cores).
    assert measured["ticks"] >= 3, measured


# Six logins at once in a gevent worker, with PASSWORD_HASH_CONCURRENCY=2: each hash's start and end.
CONCURRENCY_SCRIPT = """
from gevent import monkey

monkey.patch_all()
import json, sys, time

import gevent
from argon2 import PasswordHasher

sys.path.insert(0, "tests")
from support.settings import make_app
from orders_app.auth.passwords import hash_password

spans = []
original = PasswordHasher.hash


def timed(self, password, **kwargs):
    started = time.perf_counter()
    try:
        return original(self, password, **kwargs)
    finally:
        spans.append((started, time.perf_counter()))


PasswordHasher.hash = timed
app = make_app(PASSWORD_HASH_CONCURRENCY=2, PASSWORD_HASH_TIME_COST=2, PASSWORD_HASH_MEMORY_COST=16384)


def login():
    with app.app_context():
        hash_password("correct horse")


gevent.joinall([gevent.spawn(login) for _ in range(6)])
print(json.dumps(spans))
"""


def test_at_most_password_hash_concurrency_hashes_run_at_once():
    spans = last_json_line(CONCURRENCY_SCRIPT)
    assert len(spans) == 6
    # The most hashes running at one instant: at a hash's start, those started and not yet ended.
    overlapping = [sum(start <= s < end for start, end in spans) for s, _ in spans]
    assert max(overlapping) == 2, spans
