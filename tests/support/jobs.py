"""Running RQ jobs in the test's own process, with the service's worker class."""

from orders_app.worker import make_worker


def run_jobs(app, rq_redis, **work_options):
    """Run the queued jobs in this process with production's ``OrdersWorker``, until none is left."""
    with app.app_context():
        return make_worker(app.config, rq_redis).work(burst=True, **work_options)
