"""The orders service.

The package itself imports nothing heavy, so that gunicorn's master process can load
``orders_app.log`` before its gevent workers monkey-patch the standard library.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(overrides: Mapping[str, Any] | None = None) -> "Flask":
    """Build the Flask app; ``overrides`` win over every other configuration source (tests)."""
    from .factory import create_app as build

    return build(overrides)
