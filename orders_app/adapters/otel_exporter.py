"""OpenTelemetry's span exporters, quieter: one warning when exports start failing instead of the
exporter's lines for every batch and retry (tested in tests/test_tracing.py)."""

import logging
import os

log = logging.getLogger("orders_app.tracing")


class WarnOnce:
    """A span exporter that logs one warning when exports start failing (a collector unreachable),
    and one line when they work again, instead of the exporter's lines for every batch and retry.
    The spans of a failed export are dropped: tracing never holds the service up."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.failing = False
        # The exporter's and the batch processor's own lines, per batch, retry and full queue (the
        # processor logs under a private module's name).
        logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
        logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        result = self.exporter.export(spans)
        failing = result is not SpanExportResult.SUCCESS
        if failing and not self.failing:
            log.warning(
                "Cannot export traces to %s; dropping spans until it works again (logged once)",
                os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "the collector"),
            )
        elif self.failing and not failing:
            log.info("Exporting traces again")
        self.failing = failing
        return result

    def shutdown(self):
        self.exporter.shutdown()

    def force_flush(self, timeout_millis=30000):
        return self.exporter.force_flush(timeout_millis)
