"""Logging setup with secret redaction: API keys and agent tokens never reach a log line.

The WebSocket URL carries the key in its query string, and uvicorn logs WebSocket request lines, so
every record passes through :class:`RedactSecrets` before any handler writes it.

The gateway's lines are written by a :class:`LineBuffer`: formatted as they come, in their order, and
written together once per event-loop iteration (one ``write`` for every line of the iteration, not one
per line); an error line, a full buffer, a line from outside the event loop, and the end of the process
write at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime
from typing import IO, Any

from ..redact import RedactSecrets, redact

__all__ = [
    "ACCESS_FORMAT",
    "CleanRecords",
    "DropDenialNoise",
    "JsonFormatter",
    "LineBuffer",
    "RedactSecrets",
    "TextFormatter",
    "configure_logging",
    "flush_logs",
    "log_access",
    "redact",
]

access_log = logging.getLogger("captivate_chat_api.access")
ACCESS_FORMAT = "%s %s %d %.1fms"
"""An access line: method, path (never the query string, which may carry a key), status, duration."""


def log_access(method: str, path: str, status: int, started: float) -> None:
    """The access line of one HTTP request (``started``: its ``time.perf_counter()``). What
    ``access_log.info(ACCESS_FORMAT, ...)`` logs, without its walk up the stack for the caller's file and
    line (no formatter of ours shows them)."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.handle(
            access_log.makeRecord(
                access_log.name,
                logging.INFO,
                __file__,
                0,
                ACCESS_FORMAT,
                (method, path, status, (time.perf_counter() - started) * 1000),
                None,
            )
        )


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


class CleanRecords(logging.Filter):
    """:class:`DropDenialNoise` and :class:`RedactSecrets` in one pass: the message is formatted once,
    and kept as the record's ``msg`` (the formatter does not format it again)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message == _DENIAL_NOISE:
            return False
        cleaned = redact(message)
        if record.args or cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class LineBuffer(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes once per event-loop iteration: each record is formatted at once (in
    the order they come) and kept; the lines of an iteration are written together by a callback the
    first of them schedules on the loop (so at the latest one iteration after they were logged).

    Written at once, with every line before it: a record at ``flush_level`` (an error) or above, the
    ``capacity``-th line kept, a record logged outside a running event loop (another thread, start-up),
    :meth:`flush` and :meth:`close` (``logging.shutdown`` at exit calls both). A process killed outright
    loses at most the lines of its current iteration."""

    def __init__(
        self, stream: IO[str] | None = None, *, capacity: int = 512, flush_level: int = logging.ERROR
    ) -> None:
        super().__init__(stream)
        self.capacity = capacity
        self.flush_level = flush_level
        self._lines: list[str] = []
        self._scheduled: asyncio.AbstractEventLoop | None = None
        """The loop a write is scheduled on (None: none is)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 -- as StreamHandler: reported by handleError, the caller goes on
            self.handleError(record)
            return
        lines = self._lines
        lines.append(line)
        loop = asyncio._get_running_loop()
        if loop is None or record.levelno >= self.flush_level or len(lines) >= self.capacity:
            self.flush()
        elif self._scheduled is not loop:
            if self._scheduled is not None:  # scheduled on another loop (gone, or another thread's)
                self.flush()
            self._scheduled = loop
            loop.call_soon(self._write_scheduled, loop)

    def _write_scheduled(self, loop: asyncio.AbstractEventLoop) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._scheduled is loop:
                self._scheduled = None
        self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            lines = self._lines
            if not lines:
                return
            self._lines = []
            text = self.terminator.join(lines) + self.terminator
            try:
                self.stream.write(text)
                self.stream.flush()
            except Exception:  # noqa: BLE001 -- a closed or broken stream: reported, the caller goes on
                self.handleError(logging.makeLogRecord({"msg": text}))

    def close(self) -> None:
        self.flush()
        super().close()


def flush_logs() -> None:
    """Write what the root logger's handlers hold (the end of a server's run)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


class TextFormatter(logging.Formatter):
    """The human-readable format; tracebacks are redacted too (an exception may quote a URL with a key)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        self._second: int | None = None
        self._date = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """``logging.Formatter``'s local time (``2026-12-01 18:30:05,123``), its date and time of day made
        once per second."""
        if datefmt is not None:  # pragma: no cover - ours has none
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._date = time.strftime(self.default_time_format, self.converter(second))
            self._second = second
        msec = self.default_msec_format
        return msec % (self._date, record.msecs) if msec else self._date

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


_encode = json.JSONEncoder(ensure_ascii=False, default=str).encode
"""``json.dumps(value, ensure_ascii=False, default=str)`` without a new encoder per call."""


class _UtcTimes:
    """``datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")``, its date and time of day
    made once per second: the microseconds rounded as ``fromtimestamp`` rounds them (half to even)."""

    def __init__(self) -> None:
        self._second: float | None = None
        self._prefix = ""

    def __call__(self, created: float) -> str:
        fraction, second = math.modf(created)
        micro = round(fraction * 1e6)
        if micro >= 1_000_000:
            second, micro = second + 1.0, micro - 1_000_000
        elif micro < 0:
            second, micro = second - 1.0, micro + 1_000_000
        if second != self._second:
            self._prefix = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
            self._second = second
        return f"{self._prefix}.{micro // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC), ``level``, ``logger``, ``message``, then the fields the
    code passed as ``extra=`` (such as ``conversation_id``), and ``exception`` with its traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._time = _UtcTimes()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        if not fields.keys() <= _STANDARD:  # fields passed as ``extra=``
            for name, value in fields.items():
                if name not in _STANDARD and not name.startswith("_"):
                    plain = value is None or isinstance(value, bool | int | float)
                    entry[name] = value if plain else redact(value if isinstance(value, str) else str(value))
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return _encode(entry)


def configure_logging(level: str = "info", log_format: str = "text") -> None:
    """Log to stderr as ``text`` or ``json`` lines, every record redacted (keys and tokens never appear),
    written once per event-loop iteration (:class:`LineBuffer`)."""
    handler = LineBuffer(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(CleanRecords())  # DropDenialNoise and RedactSecrets
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
