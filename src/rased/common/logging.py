"""JSON-lines logging to stdout, with the correlation id on every record."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

from rased.common.correlation import current_correlation_id


class _CorrelationFilter(logging.Filter):
    """Adds the current correlation id and the service name to each record."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.correlation_id = current_correlation_id()
        record.service = self.service
        return True


def configure_logging(service: str, level: str = "INFO") -> None:
    """Send every log record to stdout as one JSON object per line."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(
            "{asctime}{levelname}{name}{message}{service}{correlation_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_CorrelationFilter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
