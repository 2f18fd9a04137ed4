"""Logging setup with secret redaction: API keys and agent tokens never reach a log line.

The WebSocket URL carries the key in its query string, and uvicorn logs WebSocket request lines, so
every record passes through :class:`RedactSecrets` before any handler writes it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from ..redact import RedactSecrets, redact

__all__ = [
    "DropDenialNoise",
    "JsonFormatter",
    "RedactSecrets",
    "TextFormatter",
    "configure_logging",
    "redact",
]

# attributes every record has; anything else was passed as ``extra=`` (uvicorn's color_message is noise)
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


class DropDenialNoise(logging.Filter):
    """uvicorn's sans-I/O WebSocket protocol logs an error after a handshake *denial* response (a refused
    key), which is exactly what we meant to send; every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            return record.getMessage() != _DENIAL_NOISE
        return str(record.msg) != _DENIAL_NOISE  # what getMessage() would give, without formatting


_DENIAL_NOISE = "ASGI callable returned without completing handshake."


class TextFormatter(logging.Formatter):
    """The human-readable format; tracebacks are redacted too (an exception may quote a URL with a key)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC), ``level``, ``logger``, ``message``, then the fields the
    code passed as ``extra=`` (such as ``conversation_id``), and ``exception`` with its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in record.__dict__.items():
            if name not in _STANDARD and not name.startswith("_"):
                plain = value is None or isinstance(value, bool | int | float)
                entry[name] = value if plain else redact(value if isinstance(value, str) else str(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Log to stderr as ``text`` or ``json`` lines, every record redacted (keys and tokens never appear)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
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
