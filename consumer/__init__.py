"""``python -m consumer``: turns ``new_order`` events into RQ jobs."""
