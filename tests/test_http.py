"""HTTP behaviour shared by every endpoint: paths, errors, limits, request ids, headers, docs."""

import json

import pytest
from sqlalchemy import text

from orders_app.extensions import db

from support.client import place_order
from support.network import closed_port_url
from support.settings import make_app

PATHS = [
    ("POST", "/register/"),
    ("POST", "/token"),
    ("POST", "/token/refresh"),
    ("POST", "/logout"),
    ("GET", "/users/me"),
    ("POST", "/orders/"),
    ("GET", "/orders/5b0c2a4e-7d4e-4a43-9a39-0d3b9e1c2f10/"),
    ("PATCH", "/orders/5b0c2a4e-7d4e-4a43-9a39-0d3b9e1c2f10/"),
    ("GET", "/orders/user/1/"),
    ("GET", "/health"),
    ("GET", "/health/ready"),
    ("GET", "/docs"),
    ("GET", "/openapi.json"),
]


def with_and_without_slash(path):
    return [path.rstrip("/"), path.rstrip("/") + "/"]


@pytest.mark.parametrize("method, path", PATHS)
def test_every_path_answers_with_and_without_trailing_slash_without_redirect(client, method, path):
    statuses = [client.open(p, method=method).status_code for p in with_and_without_slash(path)]
    assert statuses[0] == statuses[1]
    assert not 300 <= statuses[0] < 400
    assert statuses[0] not in (404, 405)  # both reached the route: two "no such path" are no proof


def test_unknown_path_is_404_in_the_error_format(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json["code"] == 404 and response.json["status"] == "Not Found"
    assert response.json["message"]


def test_wrong_method_is_405_in_the_error_format(client):
    response = client.delete("/users/me")
    assert response.status_code == 405
    assert response.json["code"] == 405


def test_a_body_over_64_kib_is_413(client):
    padding = "x" * (64 * 1024)
    response = client.post("/register/", json={"email": "a@example.com", "password": padding})
    assert response.status_code == 413
    assert response.json["code"] == 413


def test_a_body_just_under_64_kib_is_read(client):
    padding = "x" * (64 * 1024 - 100)
    response = client.post("/register/", json={"email": "a@example.com", "password": padding})
    assert response.status_code == 422  # read and validated: the password is too long
    assert "password" in response.json["errors"]["json"]


MALFORMED_BODIES = [
    ("application/json", b"{not json"),
    ("application/json", b""),
    ("application/json", b"[]"),
    ("application/json", b'"just a string"'),
    ("application/json", b"null"),
    ("application/json", b"12"),
    ("application/json", b'{"email": {"$ne": null}, "password": ["a"]}'),
    ("application/json", b"\xff\xfe\x00garbage"),
    ("application/json", b"[" * 5000 + b"]" * 5000),
    ("application/json", b'{"email": ' + b"1" * 5000 + b', "items": [{"quantity": ' + b"9" * 5000 + b"}]}"),
    ("text/plain", b"email=a@example.com"),
    ("application/x-www-form-urlencoded", b"username=%ff%fe&password=\x00"),
    ("multipart/form-data; boundary=zzz", b"--zzz\r\nbroken"),
]


@pytest.mark.parametrize("path", ["/register/", "/token", "/orders/"])
@pytest.mark.parametrize("content_type, body", MALFORMED_BODIES)
def test_malformed_bodies_are_4xx_never_500(client, alice, path, content_type, body):
    headers = {"Content-Type": content_type, **alice["headers"]}
    response = client.post(path, data=body, headers=headers)
    assert 400 <= response.status_code < 500, response.data
    assert response.json["code"] == response.status_code


@pytest.mark.parametrize("content_type, body", MALFORMED_BODIES)
def test_malformed_status_changes_are_4xx_never_500(client, alice, content_type, body):
    order = place_order(client, alice["headers"])
    headers = {"Content-Type": content_type, **alice["headers"]}
    response = client.patch(f"/orders/{order['id']}/", data=body, headers=headers)
    assert 400 <= response.status_code < 500, response.data
    assert response.json["code"] == response.status_code


def test_a_malformed_json_body_is_400(client):
    response = client.post("/register/", data=b"{oops", headers={"Content-Type": "application/json"})
    assert response.status_code == 400


def test_request_id_is_echoed_when_sent(client):
    response = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"


@pytest.mark.parametrize("sent", [None, "", "x" * 200, "bad id; Injected: 1", "<script>"])
def test_a_fresh_request_id_is_made_when_none_usable_was_sent(client, sent):
    headers = {"X-Request-ID": sent} if sent is not None else {}
    first = client.get("/health", headers=headers).headers["X-Request-ID"]
    second = client.get("/health", headers=headers).headers["X-Request-ID"]
    assert first != second
    assert len(first) == 32 and first.isalnum()


def test_errors_carry_the_request_id_too(client):
    assert client.get("/nope", headers={"X-Request-ID": "trace-me"}).headers["X-Request-ID"] == "trace-me"


def json_log_lines(capfd):
    return [json.loads(line) for line in capfd.readouterr().err.splitlines() if line.startswith("{")]


def test_log_lines_are_json_with_the_request_id(database, alice, capfd):
    # With its Redis down the app logs a warning while serving the request.
    app = make_app(REDIS_URL=closed_port_url("redis", "/0"))
    app.test_client().get("/users/me", headers={**alice["headers"], "X-Request-ID": "log-me"})
    lines = [line for line in json_log_lines(capfd) if line.get("request_id") == "log-me"]
    warning = next(line for line in lines if "blocklist unavailable" in line["message"])
    assert warning["level"] == "WARNING"
    assert warning["logger"] == "orders_app.auth.tokens"
    assert warning["time"].endswith("+00:00")


def test_every_request_is_logged_once_with_its_outcome(client, alice, capfd):
    order = place_order(client, alice["headers"])
    capfd.readouterr()
    client.get(f"/orders/{order['id']}/", headers={**alice["headers"], "X-Request-ID": "read-1"})
    [line] = [line for line in json_log_lines(capfd) if line["logger"] == "orders_app.requests"]
    assert line["method"] == "GET" and line["status"] == 200
    assert line["path"] == f"/orders/{order['id']}/"
    assert line["request_id"] == "read-1"
    assert line["order_id"] == order["id"]  # from the path
    assert line["duration_ms"] >= 0


def test_creating_an_order_logs_its_id(client, alice, capfd):
    order = place_order(client, alice["headers"], **{"X-Request-ID": "create-1"})
    created = [line for line in json_log_lines(capfd) if line["message"] == f"Order {order['id']} created"]
    assert created[0]["order_id"] == order["id"] and created[0]["request_id"] == "create-1"


def test_logs_can_be_plain_text(database, capfd):
    make_app(LOG_FORMAT="text").test_client().get("/health", headers={"X-Request-ID": "text-1"})
    assert "INFO orders_app.requests [request text-1, order None] GET /health 200" in capfd.readouterr().err


@pytest.mark.parametrize("path", ["/health", "/nope", "/users/me", "/openapi.json"])
def test_security_headers_on_every_response(client, path):
    headers = client.get(path).headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"


def test_docs_get_a_policy_that_lets_swagger_ui_run_from_this_origin(client):
    csp = client.get("/docs").headers["Content-Security-Policy"]
    assert "script-src 'self' 'unsafe-inline'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "http" not in csp  # nothing loaded from another origin


def test_swagger_ui_assets_are_served_locally(client):
    page = client.get("/docs").get_data(as_text=True)
    assert 'src="/docs/assets/swagger-ui-bundle.js"' in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "swagger-ui.css"):
        response = client.get(f"/docs/assets/{asset}")
        assert response.status_code == 200
        assert len(response.data) > 10_000


def test_openapi_declares_the_oauth2_password_flow(client):
    spec = client.get("/openapi.json").json
    assert spec["openapi"].startswith("3.")
    scheme = spec["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["type"] == "oauth2"
    assert scheme["flows"]["password"]["tokenUrl"] == "/token"
    assert spec["paths"]["/users/me"]["get"]["security"] == [{"OAuth2PasswordBearer": []}]
    assert "security" not in spec["paths"]["/register/"]["post"]
    token_body = spec["paths"]["/token"]["post"]["requestBody"]["content"]
    assert "application/x-www-form-urlencoded" in token_body


def test_a_value_postgresql_refuses_is_422_not_500(database):
    """Behind the schemas: a DataError (a value out of PostgreSQL's range) is the input's fault."""
    app = make_app()
    app.add_url_rule("/refused", view_func=lambda: str(db.session.scalar(text("SELECT '99999999999'::int"))))
    response = app.test_client().get("/refused")
    assert response.status_code == 422
    assert response.json["message"] == "A value is out of the range the service stores"
    with app.app_context():
        db.engine.dispose()
