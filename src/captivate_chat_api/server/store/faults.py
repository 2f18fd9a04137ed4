"""Store faults: what a failing store (or the network to it) means for the client, and one log line per episode.

=====================================  ======  ================================
fault                                  status  body ``error_desc``
=====================================  ======  ================================
disk full (SQLite ``SQLITE_FULL``,     507     ``insufficient storage: …``
PostgreSQL 53100, ``ENOSPC``)
store unreachable or timed out         503     ``store unavailable: …`` (Retry-After)
(connect, statement, pool acquire)
lock timeout (SQLite ``SQLITE_BUSY``,  503     ``store busy: …`` (Retry-After)
PostgreSQL lock_not_available)
=====================================  ======  ================================

A fault episode (one kind, faults no more than :data:`QUIET_SECONDS` apart) is logged once when it
starts, and once when it is over with how many requests it refused: a 30 s outage is two lines, not a
traceback per request.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import sqlite3
import time
from dataclasses import dataclass

log = logging.getLogger("captivate_chat_api.server.store")

QUIET_SECONDS = 5.0
"""An episode is over when no fault of its kind came for this long."""

try:  # the postgres extra is optional
    import asyncpg

    _PG_TYPES: tuple[type[Exception], ...] = (asyncpg.PostgresError, asyncpg.InterfaceError)
except ImportError:  # pragma: no cover - without the extra there is no PostgreSQL store
    asyncpg = None
    _PG_TYPES = ()

FAULT_TYPES: tuple[type[Exception], ...] = (sqlite3.Error, OSError, TimeoutError, *_PG_TYPES)
"""The exception types worth classifying (the app registers its handler for these)."""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: str
    """``disk full`` | ``unavailable`` | ``busy``."""
    status: int
    desc: str
    retry_after: int | None = None


DISK_FULL = Fault("disk full", 507, "insufficient storage: the database cannot grow (disk or quota full)")
UNAVAILABLE = Fault("unavailable", 503, "store unavailable: the database did not answer in time; retry", 2)
BUSY = Fault("busy", 503, "store busy: the database write lock is held (another process?); retry", 1)

_SQLITE_CODES = {13: DISK_FULL, 5: BUSY, 6: BUSY, 8: UNAVAILABLE, 10: UNAVAILABLE}
"""SQLITE_FULL, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY, SQLITE_IOERR."""
_NETWORK_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ETIMEDOUT,
        errno.EPIPE,
    }
)
_PG_STATES = {
    "53100": DISK_FULL,
    "55P03": BUSY,
    "57014": UNAVAILABLE,
    "57P03": UNAVAILABLE,
    "53300": UNAVAILABLE,
}
"""disk_full, lock_not_available, query_canceled (statement_timeout), cannot_connect_now, too_many_connections;
and every class 08 (connection exception) state, below."""


def classify(exc: BaseException) -> Fault | None:
    """The fault an exception of the store (or its driver, or the network) stands for, else None."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return _SQLITE_CODES.get(code & 0xFF)
        text = str(exc)
        if "disk is full" in text:
            return DISK_FULL
        if "locked" in text or "busy" in text:
            return BUSY
        return None
    if asyncpg is not None and isinstance(exc, asyncpg.PostgresError):
        state = getattr(exc, "sqlstate", "") or ""
        if state.startswith("08"):
            return UNAVAILABLE
        return _PG_STATES.get(state)
    if asyncpg is not None and isinstance(exc, asyncpg.InterfaceError):
        return UNAVAILABLE  # connection closed / lost mid-query
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DISK_FULL
    if isinstance(exc, (TimeoutError, ConnectionError)) or (
        isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS
    ):
        return UNAVAILABLE
    return None


@dataclass(slots=True)
class _Episode:
    fault: Fault
    started: float
    last: float
    count: int
    timer: asyncio.TimerHandle | None = None


class FaultLog:
    """Counts faults by kind; logs an episode's start and its end (with the count)."""

    def __init__(self, quiet: float = QUIET_SECONDS) -> None:
        self.quiet = quiet
        self._episodes: dict[str, _Episode] = {}

    def record(self, fault: Fault, exc: BaseException) -> None:
        now = time.monotonic()
        episode = self._episodes.get(fault.kind)
        if episode is None or now - episode.last > self.quiet:
            if episode is not None:
                self._end(fault.kind)
            episode = self._episodes[fault.kind] = _Episode(fault, now, now, 0)
            log.warning(
                "store fault (%s): %s: %s; answering %d until it clears",
                fault.kind,
                type(exc).__name__,
                str(exc)[:200],
                fault.status,
            )
        episode.count += 1
        episode.last = now
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if episode.timer is not None:
            episode.timer.cancel()
        episode.timer = loop.call_later(self.quiet, self._end_if_quiet, fault.kind)

    def _end_if_quiet(self, kind: str) -> None:
        episode = self._episodes.get(kind)
        if episode is not None and time.monotonic() - episode.last >= self.quiet - 0.05:
            self._end(kind)

    def _end(self, kind: str) -> None:
        episode = self._episodes.pop(kind)
        if episode.timer is not None:
            episode.timer.cancel()
        log.warning(
            "store fault (%s) over: %d request(s) answered %d in %.1f s",
            kind,
            episode.count,
            episode.fault.status,
            episode.last - episode.started,
        )

    def active(self, kind: str | None = None) -> Fault | None:
        """A fault (of ``kind``) seen within the quiet window, else None."""
        now = time.monotonic()
        for episode in self._episodes.values():
            if now - episode.last <= self.quiet and kind in (None, episode.fault.kind):
                return episode.fault
        return None
