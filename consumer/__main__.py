"""Entry point: ``python -m consumer`` (configured like the web app, from the environment)."""

from orders_app import create_app

from .consumer import Consumer


def main():
    with create_app().app_context():
        consumer = Consumer()
        consumer.stop.install()
        consumer.run()


if __name__ == "__main__":
    main()
