"""Start-up problems as one line that says what failed and what to do.

``captivate-chat serve`` (and the key commands) turn an exception raised while starting into
``error: <what failed>: <what to do>`` on stderr and exit code 2; ``--debug`` (or
``CAPTIVATE_LOG_LEVEL=debug``) shows the traceback as well. :func:`describe` is the one place that knows
what each failure means to a user.
"""

from __future__ import annotations

import errno
import socket
import sqlite3
from pathlib import Path

from ..errors import CaptivateChatError
from ..redact import redact

# A module a feature needs -> the extra that installs it.
EXTRAS = {
    "asyncpg": "postgres",
    "redis": "redis",
    "openai": "openai",
    "fastapi": "server",
    "uvicorn": "server",
}


class StartupError(CaptivateChatError):
    """The gateway cannot start; the message says why and what to do, on one line."""


def bind(host: str, port: int) -> socket.socket:
    """The gateway's listening socket, bound before anything is created (so a busy port loses nothing)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(bind_message(host, port, exc)) from exc
    return sock


def bind_message(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is in use on {host}: stop what holds it, or pass --port (0 picks a free one)"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}: pass --port with a port above 1023"
    if exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT) or isinstance(exc, socket.gaierror):
        return f"cannot listen on {host}: it is not an address of this machine: pass --host (e.g. 127.0.0.1)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}: pass --host / --port"


def check_database_url(url: str) -> None:
    """Refuse a database URL that cannot hold a gateway's data (an in-memory SQLite is gone at exit)."""
    if url.rstrip("/") in ("sqlite:", "sqlite:/") or url in ("sqlite://", "sqlite:///", ":memory:"):
        raise StartupError(f"--database {url} names no file: use sqlite:///PATH (e.g. sqlite:///./chat.db)")


def check_writable(url: str) -> None:
    """Fail now, not at the first message, when a SQLite database cannot be written (a read-only file,
    folder or file system): rewrite its header's user_version with the value it has."""
    if url.startswith(("postgresql://", "postgres://")) or "://" in url and not url.startswith("sqlite"):
        return
    path = Path(_sqlite_path(url)).expanduser()
    if not path.is_file():
        return
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        conn.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        conn.close()


def describe(exc: BaseException, database: str = "", broker: str | None = None) -> str:
    """One line that says what failed and what to do, for any exception raised while starting."""
    return redact(" ".join(_describe(exc, database, broker).split()))


def _describe(exc: BaseException, database: str, broker: str | None) -> str:
    if isinstance(exc, StartupError | ValueError):
        return str(exc)
    if isinstance(exc, ImportError) and exc.name:
        extra = EXTRAS.get(exc.name.partition(".")[0])
        if extra:
            return f"{exc.name} is not installed: pip install 'captivate-chat-api[{extra}]'"
    if isinstance(exc, sqlite3.Error):
        return _sqlite(exc, database)
    pg = _postgres(exc, database)
    if pg:
        return pg
    if broker and _is_redis_error(exc):
        return f"cannot reach the broker {broker}: {_reason(exc)}: is Redis running? check --broker"
    if isinstance(exc, OSError) and ("://" not in database or database.startswith("sqlite")):
        where = exc.filename or _sqlite_path(database)
        if isinstance(exc, FileExistsError | NotADirectoryError):
            return f"cannot create the database {_sqlite_path(database)}: {where} is a file, not a folder: pass --database"
        return f"cannot create the database folder {where}: {_reason(exc)}: pass --database sqlite:///PATH in a writable folder"
    return f"the gateway could not start: {type(exc).__name__}: {exc} (--debug shows the traceback)"


def _sqlite_path(database: str) -> str:
    path = database.split("://", 1)[-1]
    return path[1:] if database.startswith("sqlite:///") else path


def _sqlite(exc: sqlite3.Error, database: str) -> str:
    path = _sqlite_path(database)
    text = str(exc)
    if "readonly" in text or "read-only" in text:
        return f"the database {path} is read-only: make the file and its folder writable, or pass --database"
    if "unable to open" in text:
        folder = Path(path).expanduser().parent
        return (
            f"cannot open the database {path}: is {folder} a writable folder? pass --database sqlite:///PATH"
        )
    if "not a database" in text or "malformed" in text:
        return f"{path} is not a usable SQLite database ({text}): pass --database with another file"
    return f"the database {path} failed: {text}"


def _postgres(exc: BaseException, database: str) -> str | None:
    if not database.startswith(("postgresql://", "postgres://")):
        return None
    target = _pg_target(database)
    if isinstance(exc, OSError | TimeoutError):
        return f"cannot connect to PostgreSQL at {target}: {_reason(exc)}: is it running? check --database"
    module = type(exc).__module__
    if module.startswith("asyncpg"):
        return f"PostgreSQL at {target} refused: {exc}: check --database (user, password, database name)"
    return None


def _pg_target(database: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(database)
        return f"{parts.hostname or 'localhost'}:{parts.port or 5432}"
    except ValueError:
        return "the --database URL"


def _is_redis_error(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("redis") or isinstance(exc, OSError)


def _reason(exc: BaseException) -> str:
    """The plainest cause: the OS error under a library's wrapper when there is one."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return "connection refused"
    if isinstance(cause, TimeoutError) or isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return str(exc) or type(exc).__name__
