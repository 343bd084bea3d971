"""What the service changes in its libraries' behaviour, pinned so that an upgrade fails here, loudly.

Public hooks do most of it: webargs' ``load_json``, an apispec plugin given to flask-smorest, and
flask-limiter limits given as callables. Some private names are still overridden, called or read,
because the libraries offer no public way (as pinned in requirements.txt): each has a behaviour
test (here, or in the test file named), and each name is checked to still exist, so that a rename
is reported as such instead of as a mysterious change of behaviour.
"""

import warnings

import flask
import flask_jwt_extended
import flask_limiter
import flask_smorest
import opentelemetry.sdk._shared_internal
import pytest
import redis.commands.core
import rq.job
import rq.queue
import rq.scripts
import rq.worker
from flask import Flask
from flask.json.provider import DefaultJSONProvider
from redis import Redis
from rq.intermediate_queue import IntermediateQueue

from orders_app.adapters.smorest import page_numbers

from support.client import place_order
from support.network import closed_port_url
from support.settings import PASSWORD, TEST_REDIS_URL, make_app

DEEPLY_NESTED_JSON = b"[" * 5000 + b"]" * 5000
HUGE_NUMBER_JSON = b'{"status": ' + b"1" * 5000 + b"}"  # past Python's 4,300 digits: a ValueError

# (class or object, private name, what the code relies on it to do): every private name the
# service overrides, calls or reads on a library object, and the library methods its worker overrides.
PRIVATE_NAMES_USED = [
    (flask_smorest.Blueprint, "_check_precondition", "answers 428 to a PATCH without If-Match"),
    (flask_smorest.Blueprint, "_verify_check_etag", "warns when a PATCH did not call check_etag"),
    (flask_smorest.Api, "_register_pagination_header", "registers the X-Pagination header component"),
    # flask-smorest's documentation names these two as the way to change X-Pagination
    # (tests/test_orders_list.py: next_cursor, the total left out beyond the count limit);
    # adapters.smorest.page_numbers writes what the second one does (tested equal below).
    (flask_smorest.Blueprint, "_set_pagination_metadata", "writes the X-Pagination header"),
    (flask_smorest.Blueprint, "_make_pagination_metadata", "builds the page numbers of X-Pagination"),
    # Both flask-limiter's before_request and its decorators check limits there: /token and
    # /register/ fail closed while its storage is down (tests/test_rate_limits.py).
    (flask_limiter.Limiter, "_check_request_limit", "checks a request's limits, falls back to memory"),
    (flask_limiter.Limiter(key_func=str), "_storage_dead", "set while its storage is down"),
    # Every token is decoded there (tests/test_verified_tokens.py).
    (flask_jwt_extended.JWTManager, "_decode_jwt_from_config", "verifies a token, returns its claims"),
    # orders_app/adapters/json_provider.py answers with orjson (tests/test_json_provider.py).
    (DefaultJSONProvider, "_prepare_response_obj", "turns response()'s arguments into one object"),
    (Flask(__name__).json, "_app", "the provider's app: its debug flag and response class"),
    # orders_app/http.py looks the request up once per response (documented by Flask, "Notes On Proxies").
    (flask.request, "_get_current_object", "the request object behind the proxy"),
    # orders_app/adapters/rq.py (tests/test_worker.py): heartbeats batched with the state they follow.
    (rq.worker.Worker, "heartbeat", "refreshes the worker's registration, with a TTL"),
    (rq.worker.Worker, "set_state", "writes the worker's state, in a pipeline when given one"),
    (rq.worker.Worker, "get_heartbeat_ttl", "how long a started job lives without a heartbeat"),
    (rq.worker.Worker, "check_for_suspension", "looks for `rq suspend`, waits while it holds"),
    (rq.worker.Worker, "handle_execution_ended", "notes a job's end and sends its heartbeat"),
    (rq.worker.Worker, "perform_job", "runs a job (the allowlist wraps it)"),
    (rq.worker.Worker, "handle_job_failure", "fails a job (a refused one, without running it)"),
    (IntermediateQueue, "remove", "takes a job out of the queue's intermediate list"),
    (rq.job.Job, "execution_registry", "the index of a job's executions (adapters.rq.delete_job)"),
    # adapters.rq.enqueue_unique (tests/test_consumer_batches.py: the job RQ's unique enqueue writes).
    (rq.queue.Queue, "_prepare_for_queue", "sets a job's origin, enqueued_at, timeout and status"),
    (rq.scripts, "_build_hset_args", "a job's hash as the unique-enqueue script's arguments"),
    (rq.scripts, "UNIQUE_ENQUEUE_SCRIPT", "the Lua script of RQ's unique enqueue"),
    *[
        (rq.job.Job, f"{outcome}_callback", "a job's callback, which OrdersJob sets to none")
        for outcome in ("success", "failure", "stopped")
    ],
    # adapters/otel_exporter.py quiets the batch processor's logger, named after this module.
    (opentelemetry.sdk, "_shared_internal", "the module the span batch processor logs under"),
    # orders_app/adapters/redis_client.py: a Lua script made without a client, run with each app's.
    (redis.commands.core, "Script", "a Lua script, loaded again after NOSCRIPT"),
]


@pytest.mark.parametrize("owner, name, role", PRIVATE_NAMES_USED, ids=[n for _, n, _ in PRIVATE_NAMES_USED])
def test_the_private_names_we_use_still_exist(owner, name, role):
    assert hasattr(owner, name), f"{owner!r}.{name} ({role}) is gone"


# webargs: ArgumentsParser.load_json


@pytest.mark.parametrize("path", ["/orders/", "/token"])  # a JSON body, and a JSON-or-form body
@pytest.mark.parametrize("body", [DEEPLY_NESTED_JSON, HUGE_NUMBER_JSON], ids=["nested", "huge-number"])
def test_json_the_decoder_refuses_is_a_400_in_the_error_format(client, alice, path, body):
    headers = {"Content-Type": "application/json", **alice["headers"]}
    response = client.post(path, data=body, headers=headers)
    assert response.status_code == 400
    assert response.json["code"] == 400
    assert response.json["errors"] == {"json": ["Invalid JSON body."]}


# flask-smorest: Blueprint._check_precondition and Blueprint._verify_check_etag


def test_a_patch_without_if_match_is_applied_without_a_warning(client, alice):
    order = place_order(client, alice["headers"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        response = client.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=alice["headers"])
    assert response.status_code == 200
    assert [str(warning.message) for warning in caught if "ETag" in str(warning.message)] == []


def test_a_patch_with_if_match_is_still_checked(client, alice):
    order = place_order(client, alice["headers"])
    headers = {**alice["headers"], "If-Match": '"not-the-etag"'}
    response = client.patch(f"/orders/{order['id']}/", json={"status": "PAID"}, headers=headers)
    assert response.status_code == 412


# The boundaries: no orders, one, a page exactly full, one more; the last page, one past it, far past.
@pytest.mark.parametrize(
    "page, page_size, total",
    [(1, 20, 0), (1, 20, 1), (1, 20, 20), (1, 20, 21), (2, 20, 21), (3, 20, 21), (50, 20, 21), (1, 1, 1000)],
)
def test_page_numbers_are_flask_smorests(page, page_size, total):
    expected = flask_smorest.Blueprint._make_pagination_metadata(page, page_size, total)
    assert {"total": total, **page_numbers(page, page_size, total, more=None)} == expected


# flask-smorest and apispec: openapi.CommonAnswersPlugin and Api._register_pagination_header


@pytest.fixture(scope="module")
def document():
    return make_app().test_client().get("/openapi.json").json


def operations(document):
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method != "parameters":
                yield path, method, operation


def test_every_operation_documents_rate_limits_and_database_outages(document):
    for path, method, operation in operations(document):
        if path.startswith("/health"):  # neither limited nor using PostgreSQL
            assert "429" not in operation["responses"], (method, path)
        else:
            assert {"429", "503"} <= set(operation["responses"]), (method, path)


def test_every_operation_with_a_body_documents_bad_and_oversized_bodies(document):
    with_body = [(path, method, op) for path, method, op in operations(document) if "requestBody" in op]
    assert len(with_body) >= 5
    for path, method, operation in with_body:
        assert {"400", "413"} <= set(operation["responses"]), (method, path)


def test_if_match_is_documented_as_optional_and_never_answers_428(document):
    patch = document["paths"]["/orders/{order_id}/"]["patch"]
    assert "412" in patch["responses"]
    assert {"$ref": "#/components/parameters/IF_MATCH"} in patch["parameters"]
    assert document["components"]["parameters"]["IF_MATCH"]["required"] is False
    assert not [(path, method) for path, method, op in operations(document) if "428" in op["responses"]]


def test_x_pagination_is_documented_as_json_content(document):
    response = document["paths"]["/orders/user/{user_id}/"]["get"]["responses"]["200"]
    assert response["headers"]["X-Pagination"] == {"$ref": "#/components/headers/PAGINATION"}
    header = document["components"]["headers"]["PAGINATION"]
    assert "schema" not in header
    schema = header["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/PaginationMetadata"}


# flask-limiter: one limiter per app, with the limits of its own configuration


def register_many(client, count, address):
    client.environ_base["REMOTE_ADDR"] = address
    return [
        client.post("/register/", json={"email": f"c{n}@example.com", "password": PASSWORD}).status_code
        for n in range(count)
    ]


def test_each_app_has_its_own_overall_limit(database):
    make_app(RATELIMIT_APPLICATION="100/minute")
    client = make_app(RATELIMIT_APPLICATION="2/minute").test_client()
    assert [client.get("/users/me").status_code for _ in range(3)] == [401, 401, 429]


def test_each_app_has_its_own_memory_fallback(database):
    unreachable = closed_port_url("redis", "/0")
    make_app(RATELIMIT_STORAGE_URI=unreachable, RATELIMIT_IN_MEMORY_FALLBACK="3/minute")
    client = make_app(
        RATELIMIT_STORAGE_URI=unreachable, RATELIMIT_IN_MEMORY_FALLBACK="1/minute"
    ).test_client()
    assert [client.get("/users/me").status_code for _ in range(2)] == [401, 429]


def test_a_new_app_counts_in_its_own_storage_whatever_an_earlier_apps_storage_did(database):
    down = make_app(RATELIMIT_STORAGE_URI=closed_port_url("redis", "/0"))
    down.test_client().get("/users/me")
    assert down.extensions["rate_limiter"]._storage_dead is True  # flask-limiter's own flag: in memory now

    client = make_app().test_client()
    register_many(client, 1, "10.7.0.2")
    keys = Redis.from_url(TEST_REDIS_URL, decode_responses=True).keys("*ratelimit*")
    assert any("ip:10.7.0.2" in key for key in keys)


def test_an_app_built_without_rate_limits_stays_unlimited_when_a_later_app_has_them(database):
    unlimited = make_app(RATELIMIT_ENABLED=False).test_client()
    make_app()  # another app, limited
    assert register_many(unlimited, 6, "10.7.0.3") == [201] * 6  # the limit is 5 a minute
