"""Calling the API: as a test client (register, log in, place an order), with forged tokens, and
over HTTP to a server a test started (``Stack``)."""

import base64
import json
import urllib.parse
import urllib.request
from urllib.error import HTTPError

import jwt

from .settings import PASSWORD, TEST_SECRET


def register(client, email, password=PASSWORD):
    response = client.post("/register/", json={"email": email, "password": password})
    assert response.status_code == 201, response.json
    return response.json


def login(client, email, password=PASSWORD):
    response = client.post("/token", data={"username": email, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def forge_token(payload, key=TEST_SECRET, algorithm="HS256"):
    """A JWT signed (or, with ``algorithm="none"``, not signed) by whoever holds ``key``."""
    if algorithm == "none":
        segments = [{"alg": "none", "typ": "JWT"}, payload]
        encoded = [base64.urlsafe_b64encode(json.dumps(s).encode()).rstrip(b"=") for s in segments]
        return b".".join(encoded).decode() + "."
    return jwt.encode(payload, key, algorithm=algorithm)


def claims_of(token):
    return jwt.decode(token, options={"verify_signature": False})


def place_order(client, headers, items=None, **extra_headers):
    body = {"items": items or [{"name": "Bread", "quantity": 2, "price": "10.50"}]}
    response = client.post("/orders/", json=body, headers={**headers, **extra_headers})
    assert response.status_code == 201, response.json
    return response.json


class Stack:
    """A web server a test started, called over HTTP; ``logs`` are its processes' logs by name."""

    def __init__(self, base_url, logs):
        self.base_url, self.logs = base_url, logs

    def call(self, method, path, body=None, form=None, headers=None):
        """One HTTP request: a JSON ``body`` or a ``form``; returns ``(status, decoded JSON)``."""
        headers, data = dict(headers or {}), None
        if body is not None:
            headers["Content-Type"], data = "application/json", json.dumps(body).encode()
        elif form is not None:
            data = urllib.parse.urlencode(form).encode()  # urllib sends it as a form
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def log(self, name):
        return self.logs[name].read_text()

    def ready(self):
        try:
            return self.call("GET", "/health/ready")[0] == 200
        except OSError:  # not listening yet
            return False
