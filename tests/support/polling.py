"""Waiting for a condition instead of sleeping in its place."""

import time


def wait_for(condition, timeout=30.0, interval=0.05, message="condition"):
    """Poll ``condition`` until it returns something truthy; return that, or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout} s waiting for {message}")
