"""Property-based fuzzing with schemathesis against the app's own OpenAPI document.

Authenticated as a real user, with rate limiting off so every example reaches the endpoint.
Asserts that nothing answers 5xx and that every answer matches what the document promises
(status codes, content types, headers, body schemas). Beyond what schemathesis generates, JSON
strings may carry lone surrogates (which it never writes); each distinct request is sent once (its
CLI's ``--generation-unique-inputs``), and under CI=true the examples are the same every run, so a
failure there reproduces.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
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

from support.client import bearer, login, place_order, register
from support.settings import make_app

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


def with_lone_surrogates(value):
    """``value`` (a JSON body), any of its strings perhaps with a lone surrogate inserted."""
    if isinstance(value, str):
        surrogate = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
        inserted = st.builds(
            lambda at, lone: value[:at] + lone + value[at:], st.integers(0, len(value)), surrogate
        )
        return st.one_of(st.just(value), inserted)
    if isinstance(value, dict):
        return st.fixed_dictionaries({key: with_lone_surrogates(item) for key, item in value.items()})
    if isinstance(value, list):
        return st.tuples(*map(with_lone_surrogates, value)).map(list)
    return st.just(value)


# The requests that passed, by request_key: not sent again. A failing one is never in it, so
# hypothesis can replay and shrink it.
PASSED_REQUESTS = set()


def request_key(case, headers, body):
    """What makes a request: two with the same key send the same bytes."""
    return repr((case.method, case.formatted_path, case.query, headers, case.cookies, case.media_type, body))


def aim_at_real_resources(case, fuzzer):
    """In valid cases, ids become the fuzzer's own: the calls reach a real order and list."""
    parameters = case.path_parameters or {}
    if case.meta.generation.mode is GenerationMode.POSITIVE:
        for name in ("order_id", "user_id"):
            if name in parameters:
                parameters[name] = fuzzer[name]


@schema.parametrize()
@schema.given(data=st.data())
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)
def test_the_api_keeps_its_documented_promises(case, data, fuzzer):
    aim_at_real_resources(case, fuzzer)
    body = case.body
    if case.media_type == "application/json":
        body = data.draw(with_lone_surrogates(case.body), label="body sent")
    headers = {**fuzzer["headers"], **(case.headers or {})}
    key = request_key(case, headers, body)
    if key in PASSED_REQUESTS:
        return
    # Sent in place of the case's own body, which schemathesis validates again with a JSON Schema
    # validator that cannot take lone surrogates.
    case.call_and_validate(headers=headers, checks=CHECKS, **({"json": body} if body != case.body else {}))
    PASSED_REQUESTS.add(key)
