"""The worker's bookkeeping in Redis: fewer round trips than RQ's own, the same registration.

``rq info``, rq-dashboard and the container's health check read the worker's hash; RQ's registry
maintenance drops a worker whose hash expired. It must outlast each wait for a job.
"""

import pytest
import redis
from rq import Callback, Retry, Worker
from rq.exceptions import StopRequested
from rq.intermediate_queue import IntermediateQueue
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.suspension import suspend
from rq.webhook import Webhook
from rq.worker import WorkerStatus

from orders_app.job_queue import PROCESS_ORDER, enqueue_process_order, orders_queue
from orders_app.worker import make_worker

from support.client import place_order
from support.commands import WORKER, start_process
from support.jobs import run_jobs
from support.metrics import metered, scrape_url
from support.polling import wait_for
from support.settings import TEST_REDIS_URL


@pytest.fixture
def worker(app, rq_redis):
    """A worker in this process, not working: its heartbeats and states are called one by one."""
    return make_worker(app.config, rq_redis)


def last_heartbeat(rq_redis, worker):
    return rq_redis.hget(worker.key, "last_heartbeat")


def test_a_heartbeat_repeating_the_last_one_within_a_second_is_skipped(worker, rq_redis):
    worker.heartbeat()
    first = last_heartbeat(rq_redis, worker)
    worker.heartbeat()
    assert last_heartbeat(rq_redis, worker) == first

    def sent_again():
        worker.heartbeat()
        return last_heartbeat(rq_redis, worker) != first

    wait_for(sent_again, timeout=3, message="a heartbeat sent once a second has passed")


def test_a_heartbeat_asking_for_another_ttl_is_sent_at_once(worker, rq_redis):
    worker.heartbeat()
    assert rq_redis.ttl(worker.key) > worker.dequeue_timeout
    worker.heartbeat(40)  # a job starts: RQ asks for its timeout and a margin
    assert rq_redis.ttl(worker.key) <= 40
    worker.heartbeat()  # the job ended: the registration must outlast the wait for the next
    assert rq_redis.ttl(worker.key) > worker.dequeue_timeout


def test_a_state_set_on_its_own_is_written_with_a_heartbeat_when_it_changes(worker, rq_redis):
    worker.heartbeat(40)
    worker.set_state(WorkerStatus.IDLE)
    assert rq_redis.hget(worker.key, "state") == b"idle"
    assert rq_redis.ttl(worker.key) > worker.dequeue_timeout
    rq_redis.hset(worker.key, "state", "overwritten by the test")
    worker.set_state(WorkerStatus.IDLE)  # no change: nothing written
    assert rq_redis.hget(worker.key, "state") == b"overwritten by the test"


def test_rq_suspend_is_looked_for_at_most_once_a_second_and_takes_effect_within_it(worker, rq_redis):
    worker.check_for_suspension(burst=True)  # not suspended: the worker goes on
    suspend(rq_redis)
    worker.check_for_suspension(burst=True)  # looked for under a second ago: not again

    def stopped():
        try:
            worker.check_for_suspension(burst=True)
        except StopRequested:  # what RQ does in burst mode when suspended
            return True
        return False

    wait_for(stopped, timeout=3, message="the suspension seen once a second has passed")


class CountedConnection(redis.Connection):
    """A connection counting the round trips of all its instances (a pipeline is one)."""

    round_trips = 0

    def send_packed_command(self, command, check_health=True):
        CountedConnection.round_trips += 1
        return super().send_packed_command(command, check_health)


def test_a_job_costs_the_worker_two_round_trips_to_redis_fewer_than_rq_would(app, client, alice):
    """Neither the job heartbeat RQ sends as a job ends nor its look for ``rq suspend`` before
    every job is sent: in this burst RQ's own worker would make 26 round trips for 3 jobs."""
    counted = redis.Redis.from_url(TEST_REDIS_URL, connection_class=CountedConnection)

    def round_trips_of(jobs):
        for _ in range(jobs):
            enqueue_process_order(app.config, counted, place_order(client, alice["headers"])["id"], None)
        CountedConnection.round_trips = 0
        run_jobs(app, counted)
        return CountedConnection.round_trips

    one, four = round_trips_of(1), round_trips_of(4)
    assert four - one <= 26 - 2 * 3  # a worker's start and end cost the same in both runs


@pytest.mark.system
def test_rq_sees_the_worker_busy_during_a_job_then_idle_and_registered_past_its_wait(
    app, client, alice, rq_redis
):
    order = place_order(client, alice["headers"])
    job = enqueue_process_order(app.config, rq_redis, order["id"], None)
    process = start_process(WORKER, PROCESSING_DELAY_SECONDS="1")

    def the_worker():
        workers = Worker.all(connection=rq_redis, serializer=JSONSerializer)
        return workers[0] if workers else None

    try:
        wait_for(lambda: job.get_status(refresh=True) == JobStatus.STARTED, message="the job started")
        busy = the_worker()
        assert busy.get_state() == WorkerStatus.BUSY
        job_ttl = app.config["JOB_TIMEOUT_SECONDS"] + app.config["JOB_ABANDONED_GRACE_SECONDS"]
        assert 0 < rq_redis.ttl(busy.key) <= job_ttl  # the heartbeat of the job's start was sent
        wait_for(lambda: the_worker().get_state() == WorkerStatus.IDLE, message="the worker idle again")
        assert job.get_status(refresh=True) == JobStatus.FINISHED
        idle = the_worker()
        assert rq_redis.ttl(idle.key) > idle.dequeue_timeout  # it now blocks for a job that long
        assert idle.successful_job_count == 1
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_the_worker_fails_any_job_but_process_order_without_running_it(
    app, client, alice, rq_redis, tmp_path
):
    """Jobs as anyone able to write to the worker's queue in Redis could enqueue them."""
    queue = orders_queue(app.config, rq_redis)
    marker = tmp_path / "ran"
    retried = Retry(max=3, interval=1)
    hostile = [queue.enqueue("subprocess.check_output", ["touch", str(marker)], retry=retried)]
    # process_order itself, carrying what would run something else on its outcome.
    carrying = [
        {"on_success": Callback("subprocess.check_output")},
        {"on_failure": Callback("subprocess.check_output")},
        {"webhooks": [Webhook(url="http://127.0.0.1:9/", job_status="finished")]},
    ]
    orders = [place_order(client, alice["headers"]) for _ in carrying]
    for order, extra in zip(orders, carrying, strict=True):
        hostile.append(queue.enqueue(PROCESS_ORDER, order["id"], **extra))
    good = enqueue_process_order(app.config, rq_redis, place_order(client, alice["headers"])["id"], None)
    log = tmp_path / "worker.log"
    with metered(WORKER, stdout=log.open("w")) as metrics:
        wait_for(lambda: good.get_status(refresh=True) == JobStatus.FINISHED, message="the good job")
        assert scrape_url(metrics).value("orders_jobs_refused_total") == len(hostile)
    assert all(f"Refused job {job.id} from queue orders: " in log.read_text() for job in hostile)
    assert [job.get_status(refresh=True) for job in hostile] == [JobStatus.FAILED] * len(hostile)
    assert all(job.latest_result().exc_string.startswith("Refused: ") for job in hostile)
    # Failed for good: no retry pending, nothing left "being dequeued" for RQ's cleanup to fail again.
    assert (len(queue), queue.scheduled_job_registry.count, queue.started_job_registry.count) == (0, 0, 0)
    assert IntermediateQueue(queue.key, connection=rq_redis).get_job_ids() == []
    assert not marker.exists()
    unprocessed = [client.get(f"/orders/{order['id']}/", headers=alice["headers"]).json for order in orders]
    assert [order["processed_at"] for order in unprocessed] == [None] * len(orders)


def test_a_job_written_without_a_timeout_runs_instead_of_stopping_the_worker(app, client, alice, rq_redis):
    """Whoever can write to Redis could leave out a job's timeout: the worker once quit on it."""
    order = place_order(client, alice["headers"])
    job = enqueue_process_order(app.config, rq_redis, order["id"], request_id=None)
    rq_redis.hdel(job.key, "timeout")
    run_jobs(app, rq_redis)
    assert job.get_status(refresh=True) == JobStatus.FINISHED


def test_a_job_logs_no_line_about_how_long_its_result_is_kept(app, client, alice, rq_redis, caplog):
    """RQ would say after every job that its result is kept 500 s: a line a job, always the same."""
    enqueue_process_order(app.config, rq_redis, place_order(client, alice["headers"])["id"], None)
    with caplog.at_level("INFO", logger="rq.worker"):
        run_jobs(app, rq_redis)
    messages = [record.getMessage() for record in caplog.records if record.name == "rq.worker"]
    assert any("Job OK" in message for message in messages)
    assert not any("is kept for" in message for message in messages)
