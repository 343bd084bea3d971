"""Running RQ jobs in the test's own process, with the service's worker class."""

from rq.serializers import JSONSerializer

from orders_app.worker import OrdersWorker


def run_jobs(app, rq_redis, **work_options):
    """Run the queued jobs in this process with production's ``OrdersWorker``, until none is left."""
    with app.app_context():
        return OrdersWorker(["orders"], connection=rq_redis, serializer=JSONSerializer).work(
            burst=True, **work_options
        )
