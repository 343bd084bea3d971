"""Prometheus metrics: /metrics in process, and every process of the stack scraped for real."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager

import psycopg2
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from orders_app.extensions import db

from support.broker import publish
from support.client import place_order
from support.commands import CONSUMER, RELAY, WORKER
from support.metrics import Scrape, answers, metered, process, scrape_url
from support.network import closed_port_url, free_port
from support.polling import wait_for
from support.settings import ROOT, make_app

SPEC_METRICS = {
    "http_requests_total": "counter",
    "http_request_duration_seconds": "histogram",
    "orders_created_total": "counter",
    "orders_outbox_pending": "gauge",
    "orders_outbox_oldest_pending_age_seconds": "gauge",
    "orders_unprocessed": "gauge",
    "orders_unprocessed_oldest_age_seconds": "gauge",
    "orders_events_published_total": "counter",
    "orders_events_dead_lettered_total": "counter",
    "orders_jobs_enqueued_total": "counter",
    "orders_processed_total": "counter",
    "orders_reconciled_total": "counter",
    "orders_rq_jobs": "gauge",
}
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
PROMETHEUS = shutil.which("prometheus")


def scrape_client(client):
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)


# --- /metrics in process -------------------------------------------------------------------------


def test_metrics_serves_every_metric_of_the_contract_with_its_type(client):
    scrape = scrape_client(client)
    assert scrape.names().items() >= SPEC_METRICS.items()
    assert scrape.value("orders_outbox_pending") == 0
    assert scrape.value("orders_outbox_oldest_pending_age_seconds") == 0
    assert scrape.value("orders_unprocessed_oldest_age_seconds") == 0
    for state in ("queued", "started", "scheduled", "failed"):
        assert scrape.value("orders_rq_jobs", queue="orders", state=state) == 0


def test_metrics_is_not_rate_limited_nor_in_the_openapi_document(client):
    # More scrapes than the overall limit of 100 a minute allows one caller.
    assert {client.get("/metrics").status_code for _ in range(101)} == {200}
    assert client.get("/users/me").status_code == 401  # not 429: the scrapes used none of the budget
    assert not any("metrics" in path for path in client.get("/openapi.json").json["paths"])


def test_requests_are_counted_by_url_rule_method_and_status(client, alice):
    before = scrape_client(client)
    ids = [uuid.uuid4() for _ in range(3)]
    for order_id in ids[:2]:
        assert client.get(f"/orders/{order_id}/", headers=alice["headers"]).status_code == 404
    assert client.get(f"/no/such/path/{ids[2]}").status_code == 404
    assert client.open("/health", method="BREW").status_code == 405
    after = scrape_client(client)

    def moved(name, **labels):
        return after.value(name, **labels) - (before.value(name, **labels) or 0)

    route = "/orders/<uuid:order_id>/"
    assert moved("http_requests_total", method="GET", route=route, status="404") == 2
    assert moved("http_request_duration_seconds_count", method="GET", route=route) == 2
    assert moved("http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert moved("http_requests_total", method="other", route="unmatched", status="405") == 1
    # Raw paths never become label values (they would make a series per order).
    assert not any(str(order_id) in str(labels) for order_id in ids for _, labels in after.samples)


def test_a_scrape_reads_the_database_on_one_connection(app, client):
    checkouts = []
    with app.app_context():
        event.listen(db.engine, "checkout", lambda *_: checkouts.append("a connection"))
    scrape = scrape_client(client)
    assert scrape.value("orders_outbox_pending") == 0 and scrape.value("orders_unprocessed") == 0
    assert checkouts == ["a connection"]


def test_a_failing_redis_read_drops_only_the_rq_gauges(database, caplog):
    client = make_app(REDIS_URL=closed_port_url("redis")).test_client()
    scrape = scrape_client(client)
    assert "orders_rq_jobs" not in scrape.families
    assert scrape.value("orders_outbox_pending") == 0 and scrape.value("orders_unprocessed") == 0
    assert "Metrics: cannot read rq_jobs" in caplog.text


def test_an_unreachable_database_drops_only_the_database_gauges(database, caplog):
    client = make_app(SQLALCHEMY_DATABASE_URI=closed_port_url("postgresql+psycopg2", "/orders")).test_client()
    scrape = scrape_client(client)
    for name in ("orders_outbox_pending", "orders_unprocessed", "orders_unprocessed_oldest_age_seconds"):
        assert name not in scrape.families
    assert scrape.value("orders_rq_jobs", queue="orders", state="queued") == 0
    assert "Metrics: cannot read database" in caplog.text


def test_a_slow_database_read_gives_up_after_the_read_timeout(database, caplog):
    """A table locked by another transaction: that read times out; the scrape still answers."""
    locker = psycopg2.connect(make_url(database).set(drivername="postgresql").render_as_string(False))
    locker.cursor().execute("LOCK TABLE outbox_events IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(10, locker.rollback)  # without the timeout the scrape would wait for this
    release.start()
    try:
        client = make_app(METRICS_READ_TIMEOUT=0.3).test_client()
        started = time.monotonic()
        scrape = scrape_client(client)
        elapsed = time.monotonic() - started
    finally:
        release.cancel()
        locker.close()
    assert elapsed < 5
    assert "orders_outbox_pending" not in scrape.families
    assert scrape.value("orders_unprocessed") == 0
    assert "canceling statement due to statement timeout" in caplog.text


def test_the_docs_document_exactly_the_metrics_served(client):
    with open(os.path.join(ROOT, "docs", "operations.md")) as page:
        section = page.read().split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `((?:http|orders)_[a-z_]+)` \|", section, re.M))
    served = {name for name in scrape_client(client).names() if name.startswith(("http_", "orders_"))}
    assert documented == served
    assert served >= set(SPEC_METRICS)


# --- real processes ------------------------------------------------------------------------------


@contextmanager
def web(metrics_dir, workers=2):
    """gunicorn with gevent workers, as in production: yields (base URL, the master process)."""
    port = free_port()
    settings = {
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_GRACEFUL_TIMEOUT": "5",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "FLASK_RATELIMIT_ENABLED": "false",
    }
    with process(GUNICORN, **settings) as master:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/metrics"), timeout=30, message="gunicorn")
        yield base, master


def post_order(base, headers):
    request = urllib.request.Request(
        f"{base}/orders/",
        data=b'{"items": [{"name": "Bread", "quantity": 1, "price": "2.50"}]}',
        headers={**headers, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 201


@pytest.mark.system
def test_an_order_moves_each_pipeline_counter_by_one(alice, broker, tmp_path):
    with ExitStack() as stack:
        base, _ = stack.enter_context(web(tmp_path / "web"))
        relay, consumer, worker = (stack.enter_context(metered(c)) for c in (RELAY, CONSUMER, WORKER))
        post_order(base, alice["headers"])
        wait_for(lambda: scrape_url(worker).value("orders_processed_total") == 1, message="processing")
        web_metrics = scrape_url(f"{base}/metrics")
        assert web_metrics.value("orders_created_total") == 1
        assert web_metrics.value("http_requests_total", method="POST", route="/orders/", status="201") == 1
        assert scrape_url(relay).value("orders_events_published_total") == 1
        assert scrape_url(consumer).value("orders_jobs_enqueued_total") == 1
        assert scrape_url(consumer).value("orders_events_dead_lettered_total") == 0


@pytest.mark.system
def test_a_malformed_message_is_counted_as_dead_lettered(broker, topology):
    with metered(CONSUMER) as consumer:
        publish(broker, topology, b"not json")
        publish(broker, topology, {"event": "new_order", "order_id": "not a uuid"})
        wait_for(lambda: scrape_url(consumer).value("orders_events_dead_lettered_total") == 2)
        assert scrape_url(consumer).value("orders_jobs_enqueued_total") == 0


@pytest.mark.system
def test_the_state_gauges_follow_a_backlog(client, alice, broker, tmp_path):
    def gauges():
        scrape = scrape_url(f"{base}/metrics")
        return {
            "pending": scrape.value("orders_outbox_pending"),
            "pending_age": scrape.value("orders_outbox_oldest_pending_age_seconds"),
            "unprocessed": scrape.value("orders_unprocessed"),
            "unprocessed_age": scrape.value("orders_unprocessed_oldest_age_seconds"),
            "queued": scrape.value("orders_rq_jobs", queue="orders", state="queued"),
        }

    with ExitStack() as stack:
        base, _ = stack.enter_context(web(tmp_path / "web"))
        for _ in range(3):  # the relay is stopped: the events wait in the outbox
            place_order(client, alice["headers"])
        backlog = gauges()
        assert (backlog["pending"], backlog["unprocessed"], backlog["queued"]) == (3, 3, 0)
        assert backlog["pending_age"] > 0 and backlog["unprocessed_age"] > 0

        stack.enter_context(metered(RELAY))
        stack.enter_context(metered(CONSUMER))  # no worker yet: the jobs wait in RQ
        waiting = wait_for(lambda: (g := gauges())["queued"] == 3 and g, message="the jobs queued")
        assert (waiting["pending"], waiting["pending_age"], waiting["unprocessed"]) == (0, 0, 3)

        stack.enter_context(metered(WORKER))
        wait_for(lambda: gauges() == dict.fromkeys(backlog, 0), message="the backlog gone")


@pytest.mark.system
def test_gunicorn_workers_are_added_up_even_after_they_die(tmp_path):
    """Counts survive the workers that made them; a previous run's files do not."""
    metrics_dir = tmp_path / "web"
    metrics_dir.mkdir()
    subprocess.run(  # a previous run left a count of 41 orders behind
        [sys.executable, "-c", "from orders_app.metrics import ORDERS_CREATED; ORDERS_CREATED.inc(41)"],
        cwd=ROOT, env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, check=True,
    )  # fmt: skip
    assert list(metrics_dir.glob("counter_*.db"))
    with web(metrics_dir, workers=2) as (base, master):
        assert scrape_url(f"{base}/metrics").value("orders_created_total") == 0
        for n in range(20):  # new connections: the workers share them
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(f"{base}/no-such-page/{n}", timeout=10)
        old_workers = worker_pids(master)
        for pid in old_workers:  # both workers die; gunicorn starts new ones, which counted nothing
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(worker_pids(master) - old_workers) == 2, timeout=30, message="new workers")
        scrape = wait_for(lambda: answers(f"{base}/metrics"), timeout=30)
    assert scrape.value("http_requests_total", method="GET", route="unmatched", status="404") == 20
    assert scrape.value("http_request_duration_seconds_count", method="GET", route="unmatched") == 20


def worker_pids(master):
    with open(f"/proc/{master.pid}/task/{master.pid}/children") as children:
        return {int(pid) for pid in children.read().split()}


# --- a real Prometheus ---------------------------------------------------------------------------


@contextmanager
def prometheus_server(workdir, targets):
    """Debian's Prometheus scraping ``targets`` (job -> host:port) every second, with the shipped
    alert rules: yields the URL of its HTTP API."""
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [os.path.join(ROOT, "deploy", "prometheus", "alerts.yml")],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
        ],
    }
    config_file = workdir / "prometheus.yml"
    config_file.write_text(json.dumps(config))  # JSON is YAML
    command = [
        PROMETHEUS,
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (
        open(workdir / "prometheus.log", "w") as log,
        subprocess.Popen(command, stdout=log, stderr=log) as server,
    ):
        try:
            api = f"http://127.0.0.1:{port}/api/v1"
            wait_for(lambda: server.poll() is None and answers_api(f"{api}/status/buildinfo"), timeout=30,
                     message=f"Prometheus (log: {workdir / 'prometheus.log'})")  # fmt: skip
            yield api
        finally:
            server.terminate()


def answers_api(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except OSError:
        return None
    assert body["status"] == "success", body
    return body["data"]


def query(api, expression):
    """The value of a PromQL expression that gives at most one series (None when it gives none)."""
    result = answers_api(f"{api}/query?{urllib.parse.urlencode({'query': expression})}")["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


@pytest.mark.skipif(not PROMETHEUS, reason="needs the prometheus binary: apt-get install prometheus")
@pytest.mark.system
def test_a_real_prometheus_scrapes_every_process_and_evaluates_the_rules(alice, broker, topology, tmp_path):
    with ExitStack() as stack:
        base, _ = stack.enter_context(web(tmp_path / "web"))
        targets = {"web": urllib.parse.urlsplit(base).netloc}
        for job, command in (("relay", RELAY), ("consumer", CONSUMER), ("worker", WORKER)):
            targets[job] = urllib.parse.urlsplit(stack.enter_context(metered(command))).netloc
        api = stack.enter_context(prometheus_server(tmp_path, targets))
        wait_for(lambda: query(api, "sum(up)") == 4, timeout=30, message="every target up")

        post_order(base, alice["headers"])
        publish(broker, topology, b"not json")
        for counter in (
            "orders_created_total",
            "orders_events_published_total",
            "orders_jobs_enqueued_total",
            "orders_processed_total",
            "orders_events_dead_lettered_total",
        ):
            wait_for(
                lambda c=counter: query(api, f"sum({c})") == 1,
                timeout=30,
                message=f"{counter} = 1 in Prometheus",
            )
        assert query(api, 'http_requests_total{job="web", route="/orders/", status="201"}') == 1
        assert query(api, "orders_unprocessed") == 0

        # The shipped rules load, evaluate without error, and the dead letter fires its alert.
        firing = 'ALERTS{alertname="OrdersDeadLettered", alertstate="firing"}'
        wait_for(lambda: query(api, firing) == 1, timeout=30, message="the dead-letter alert")
        rules = [rule for group in answers_api(f"{api}/rules")["groups"] for rule in group["rules"]]
        assert len(rules) == 8 and {rule["health"] for rule in rules} == {"ok"}, rules
        assert query(api, 'count(ALERTS{alertstate="firing"})') == 1  # nothing else is wrong
