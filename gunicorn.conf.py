"""gunicorn settings: gevent workers, tunable from the environment."""

import glob
import os
import shutil
import tempfile

from gunicorn import glogging

from orders_app.config import web_workers  # standard library and python-dotenv only

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gevent"
workers = web_workers()
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", 1000))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 30))
# On SIGTERM, workers stop accepting and finish the requests in hand for up to this long.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 30))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", 5))
# No preload: each worker builds its own app, so no connection is shared across a fork.
preload_app = False
# No control socket (gunicornc): by default it goes under $HOME, which the image's user does not
# have (an ERROR at every start), and two servers of one user would share its path.
control_socket_disable = True

# Prometheus multiprocess mode: each worker writes its metrics to files here and /metrics adds
# them up. Set before any worker imports prometheus_client; a fresh directory unless given.
_own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orders-web-metrics-")
metrics_dir = os.environ["PROMETHEUS_MULTIPROC_DIR"]

# The app logs every request itself (JSON, with its request id); gunicorn's own lines use the
# same handler. orders_app.log imports only the standard library and orjson, so gevent can still
# patch what it imports (tests/test_gunicorn_master.py).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {},
    "handlers": {
        "service": {
            "()": "orders_app.log.make_handler",
            "log_format": os.environ.get("FLASK_LOG_FORMAT", "json"),
        }
    },
    "root": {"handlers": ["service"], "level": os.environ.get("FLASK_LOG_LEVEL", "INFO")},
    "loggers": {
        "gunicorn.error": {"handlers": [], "propagate": True},
    },
}


class Logger(glogging.Logger):
    """gunicorn's logger without its access log: the app logs each request itself, and with a
    logging configuration given, gunicorn builds every access line's fields before the level
    drops the line (measured in docs/performance.md)."""

    def access(self, resp, req, environ, request_time):
        pass


logger_class = Logger


def post_fork(server, worker):
    """Make psycopg2 yield to other greenlets while it waits on PostgreSQL, and set up traces if the
    OTEL_* variables ask for them: in the worker (the exporter's thread does not survive a fork), and
    after gevent's patching, which the gevent worker does next anyway, so that the thread and the
    exporter's sockets are gevent's."""
    from gevent import monkey
    from psycogreen.gevent import patch_psycopg

    monkey.patch_all()
    patch_psycopg()

    from orders_app import tracing

    tracing.setup("orders-web")


def post_request(worker, req, environ, resp):
    """Let the worker's other connections go first before reading this one's next request.

    Without it a keep-alive connection whose next request has already arrived is served again at
    once, without returning to gevent's hub, and the other connections wait, on a ten-line app as
    on ours (docs/performance.md).
    """
    import gevent

    gevent.sleep(0)


def on_starting(server):
    """Start from an empty metrics directory: files of an earlier run would add old counts."""
    os.makedirs(metrics_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(metrics_dir, "*.db")):
        os.remove(stale)


def child_exit(server, worker):
    """Drop a dead worker's live gauges (its counters stay: they were counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    if _own_metrics_dir:
        shutil.rmtree(metrics_dir, ignore_errors=True)
