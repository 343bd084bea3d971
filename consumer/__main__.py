"""Entry point: ``python -m consumer``."""

import argparse

from orders_app import create_app
from orders_app.metrics import serve_process_metrics

from .consumer import Consumer


def main(argv=None):
    argparse.ArgumentParser(
        prog="python -m consumer",
        description="Consume new_order events from RabbitMQ and enqueue one RQ job per order, until "
        "SIGTERM/SIGINT. Configured from the environment, like the web app (see .env.example).",
    ).parse_args(argv)
    with create_app().app_context() as context:
        serve_process_metrics(context.app.config)
        consumer = Consumer()
        consumer.stop.install()
        consumer.run()


if __name__ == "__main__":
    main()
