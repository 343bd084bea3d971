"""What a process of the service serves on its metrics port, read with prometheus-client's own
parser; a relay, consumer or worker started with its metrics on a free port."""

import signal
import subprocess
import urllib.request
from contextlib import contextmanager

from prometheus_client.parser import text_string_to_metric_families

from .commands import start_process
from .network import free_port
from .polling import wait_for


class Scrape:
    """One scrape, parsed by prometheus-client's own parser."""

    def __init__(self, text):
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in self.families.values()
            for sample in family.samples
        }

    def value(self, name, **labels):
        """A sample's value, or None when the scrape does not have it."""
        return self.samples.get((name, frozenset(labels.items())))

    def names(self):
        """The metric names as exposed (the parser drops a counter's ``_total``), with their types."""
        return {
            f"{family.name}_total" if family.type == "counter" else family.name: family.type
            for family in self.families.values()
        }


def scrape_url(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return Scrape(response.read().decode())


def answers(url):
    try:
        return scrape_url(url)
    except OSError:
        return None


def metric(port, name):
    """The value of the sample ``name`` (unlabelled) a process serves on its metrics ``port``."""
    return scrape_url(f"http://127.0.0.1:{port}/metrics").value(name)


@contextmanager
def process(command, **settings):
    """A real process of the service, stopped with SIGTERM on exit."""
    child = start_process(command, **settings)
    try:
        yield child
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def metered(command, **settings):
    """A relay, consumer or worker serving its metrics on a free port: yields their URL."""
    port = free_port()
    with process(command, FLASK_METRICS_PORT=str(port), **settings):
        url = f"http://127.0.0.1:{port}/metrics"
        wait_for(lambda: answers(url), timeout=30, message=f"metrics of {command[-1]}")
        yield url
