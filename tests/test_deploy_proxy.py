"""The compose stack's proxy (deploy/nginx/nginx.conf) run for real in front of a web server.

Docker is not available here, so Debian's nginx runs the same file, with the addresses that
Docker's network would give (the `web` name, the published port) swapped for local ports.
"""

import http.client
import json
import re
import shutil
import signal
import subprocess

import pytest

from support.commands import PROCESSES, start_process
from support.network import free_port
from support.polling import wait_for
from support.settings import ROOT

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(not NGINX, reason="nginx is not installed (.ci/run installs it)"),
]
CLIENT_ADDRESS = "127.0.0.2"  # a loopback address of its own, unlike the proxy's 127.0.0.1


class Proxy:
    def __init__(self, port, health_port, web_port, web, web_log, access_log):
        self.port, self.health_port, self.web_port = port, health_port, web_port
        self.web, self.web_log, self.access_log = web, web_log, access_log

    def request(self, method, path, body=None, headers=None, port=None):
        """``(status, headers, body)`` of one request from ``CLIENT_ADDRESS``."""
        connection = http.client.HTTPConnection(
            "127.0.0.1", port or self.port, timeout=10, source_address=(CLIENT_ADDRESS, 0)
        )
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.headers, response.read()
        finally:
            connection.close()

    def healthy(self):
        try:
            return self.request("GET", "/health", port=self.health_port)[0] == 200
        except OSError:
            return False


@pytest.fixture
def proxy(database, tmp_path):
    web_port, port, health_port = free_port(), free_port(), free_port()
    with open(f"{ROOT}/deploy/nginx/nginx.conf") as original:
        config = original.read()
    for docker_value, local_value in (
        ("set $web http://web:8000;", f"set $web http://127.0.0.1:{web_port};"),
        ("listen 8000;", f"listen 127.0.0.1:{port};"),
        ("listen 127.0.0.1:8081;", f"listen 127.0.0.1:{health_port};"),
    ):
        assert config.count(docker_value) == 1, docker_value
        config = config.replace(docker_value, local_value)
    (tmp_path / "nginx.conf").write_text(config)
    web_log, access_log = tmp_path / "web.log", tmp_path / "access.log"
    web = start_process(
        PROCESSES["web"],
        stdout=web_log.open("w"),
        GUNICORN_BIND=f"127.0.0.1:{web_port}",
        WEB_CONCURRENCY="1",
        FLASK_TRUSTED_PROXIES="1",
        HOME="/dev/null",  # as the image's user, who has no home directory to write to
    )
    nginx = subprocess.Popen(
        [NGINX, "-p", str(tmp_path), "-e", "stderr", "-c", str(tmp_path / "nginx.conf"),
         "-g", f"daemon off; pid {tmp_path}/nginx.pid;"],
        stdout=access_log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    proxy = Proxy(port, health_port, web_port, web, web_log, access_log)
    try:
        wait_for(proxy.healthy, message="the proxy")
        wait_for(
            lambda: proxy.request("GET", "/health")[0] == 200, timeout=60, message="the web server behind it"
        )
        yield proxy
    finally:
        for process in (nginx, web):
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)


def web_lines(proxy, request_id):
    lines = [json.loads(line) for line in proxy.web_log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("request_id") == request_id]


def test_the_proxy_passes_the_request_id_and_the_real_client(proxy):
    # A spoofed X-Forwarded-For: the app trusts the one proxy in front, so it sees the real address.
    status, headers, _ = proxy.request("GET", "/health", headers={"X-Forwarded-For": "203.0.113.9"})
    assert status == 200
    request_id = headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    # The id that nginx generated (in its access log) is the one the app logged and answered.
    wait_for(lambda: f'"request_id": "{request_id}"' in proxy.access_log.read_text(), message="access log")
    (line,) = wait_for(lambda: web_lines(proxy, request_id), message="the web server's log line")
    assert line["client"] == CLIENT_ADDRESS

    status, headers, _ = proxy.request("GET", "/health", headers={"X-Request-ID": "client-chosen-id"})
    assert headers["X-Request-ID"] == "client-chosen-id"


def test_the_proxys_own_refusals_use_the_error_body(proxy):
    # Over 64 KiB: refused by the proxy as the app refuses it.
    too_large = json.dumps({"email": "a@example.com", "password": "x" * 64 * 1024})
    json_headers = {"Content-Type": "application/json"}
    status, headers, body = proxy.request("POST", "/register/", too_large, json_headers)
    assert status == 413
    assert headers["Content-Type"] == "application/json" and headers["X-Request-ID"]
    app_status, _, app_body = proxy.request(
        "POST", "/register/", too_large, json_headers, port=proxy.web_port
    )
    assert (status, json.loads(body)) == (app_status, json.loads(app_body))

    proxy.web.send_signal(signal.SIGTERM)  # nothing answers behind the proxy any more
    proxy.web.wait(timeout=30)
    status, headers, body = proxy.request("GET", "/health")
    assert status == 503 and headers["Retry-After"] == "5"
    assert headers["Content-Type"] == "application/json" and headers["X-Request-ID"]
    assert json.loads(body) == {
        "code": 503,
        "status": "Service Unavailable",
        "message": "No web process answered; retry later.",
    }


def test_metrics_are_not_routed_but_served_to_a_direct_scrape(proxy):
    for path in (
        "/metrics",
        "/metrics/",
        "//metrics",
        "/%6detrics",
        "/./metrics",
        "/metrics?format=text",
        "/metrics//",
    ):
        status, headers, body = proxy.request("GET", path)
        assert status == 404, path
        assert headers["Content-Type"] == "application/json" and headers["X-Request-ID"]
        assert json.loads(body) == json.loads(proxy.request("GET", "/no-such-page")[2])
    status, _, body = proxy.request("GET", "/metrics", port=proxy.web_port)  # what Prometheus scrapes
    assert status == 200 and b"http_requests_total" in body


def test_the_web_server_starts_without_an_error(proxy):
    # gunicorn's control socket, under $HOME by default, logged an ERROR at every start in the image.
    wait_for(lambda: "Booting worker" in proxy.web_log.read_text(), message="the web worker's start")
    log = proxy.web_log.read_text()
    assert '"level":"ERROR"' not in log and "Control server error" not in log
