"""Entry point: ``python -m consumer``."""

import argparse
from collections.abc import Sequence

from orders_app import tracing
from orders_app.config import load_standalone_config
from orders_app.log import configure_logging
from orders_app.metrics import serve_process_metrics

from .consumer import Consumer


def main(argv: Sequence[str] | None = None) -> None:
    argparse.ArgumentParser(
        prog="python -m consumer",
        description="Consume new_order events from RabbitMQ and enqueue one RQ job per order, until "
        "SIGTERM/SIGINT. Configured from the environment, like the web app (see .env.example).",
    ).parse_args(argv)
    config = load_standalone_config()
    configure_logging(config["LOG_LEVEL"], config["LOG_FORMAT"])
    serve_process_metrics(config)
    tracing.setup("orders-consumer")
    consumer = Consumer(config)
    consumer.stop.install()
    consumer.run()


if __name__ == "__main__":
    main()
