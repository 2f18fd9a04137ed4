"""Logging setup with secret redaction: API keys and agent tokens never reach a log line.

The WebSocket URL carries the key in its query string, and uvicorn logs WebSocket request lines, so
every record passes through :class:`RedactSecrets` before any handler writes it.
"""

from __future__ import annotations

import logging
import sys

from ..redact import RedactSecrets, redact

__all__ = ["DropDenialNoise", "RedactSecrets", "configure_logging", "redact"]

class DropDenialNoise(logging.Filter):
    """uvicorn's sans-I/O WebSocket protocol logs an error after a handshake *denial* response (a refused
    key), which is exactly what we meant to send; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(DropDenialNoise())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
