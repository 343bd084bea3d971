"""What a process of the service serves on its metrics port."""

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def metric(port, name):
    """The value of the sample ``name`` a process serves on its metrics ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
        return next(sample.value for family in families for sample in family.samples if sample.name == name)
