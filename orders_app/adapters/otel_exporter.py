"""OpenTelemetry's span exporters, quieter: one warning when exports start failing instead of the
exporter's lines for every batch and retry (tested in tests/test_tracing.py).

Imports the SDK: ``orders_app.tracing`` imports this module only when tracing is on.
"""

import logging
import os
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

log = logging.getLogger("orders_app.tracing")


class WarnOnce(SpanExporter):
    """A span exporter that logs one warning when exports start failing (a collector unreachable),
    and one line when they work again, instead of the exporter's lines for every batch and retry.
    The spans of a failed export are dropped: tracing never holds the service up."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.failing = False
        # The exporter's and the batch processor's own lines, per batch, retry and full queue (the
        # processor logs under a private module's name).
        logging.getLogger("opentelemetry.exporter").setLevel(logging.CRITICAL)
        logging.getLogger("opentelemetry.sdk._shared_internal").setLevel(logging.ERROR)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
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

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)
