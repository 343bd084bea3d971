"""Property-based fuzzing with schemathesis against the app's own OpenAPI document.

Authenticated as a real user, with rate limiting off so every example reaches the endpoint.
Asserts that nothing answers 5xx and that every answer matches what the document promises
(status codes, content types, headers, body schemas).
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from helpers import bearer, login, make_app, place_order, register

MAX_EXAMPLES = 300
# Not "positive data acceptance": some valid-looking bodies break rules no schema states
# (total_price must equal the sum of the items), and rightly get a 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
]


# Reading the document needs no database; the calls run after the fixtures migrated it.
fuzzed_app = make_app(RATELIMIT_ENABLED=False)
# /logout would revoke the token every other call uses; test_auth covers it.
schema = schemathesis.openapi.from_wsgi("/openapi.json", fuzzed_app).exclude(path="/logout")


@pytest.fixture
def fuzzer(database):
    """A real user with a real order, so that generated ids can point at something that exists."""
    client = fuzzed_app.test_client()
    user = register(client, "fuzzer@example.com")
    headers = bearer(login(client, "fuzzer@example.com")["access_token"])
    return {"headers": headers, "user_id": user["id"], "order_id": place_order(client, headers)["id"]}


def aim_at_real_resources(case, fuzzer):
    """In valid cases, ids become the fuzzer's own: the calls reach a real order and list."""
    parameters = case.path_parameters or {}
    if case.meta.generation.mode is GenerationMode.POSITIVE:
        for name in ("order_id", "user_id"):
            if name in parameters:
                parameters[name] = fuzzer[name]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_keeps_its_documented_promises(case, fuzzer):
    aim_at_real_resources(case, fuzzer)
    headers = {**fuzzer["headers"], **(case.headers or {})}
    case.call_and_validate(headers=headers, checks=CHECKS)
