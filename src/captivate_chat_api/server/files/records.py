"""File records in the store (table ``files``, migration 0003) and the deployment's URL-signing secret.

Kept beside the store rather than in it: the same few queries for SQLite (its writer/reader threads) and
PostgreSQL (its pool), picked by :func:`records_for`.
"""

from __future__ import annotations

import abc
import secrets
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..store import Store

if TYPE_CHECKING:
    from ..store.sqlite import SQLiteStore
from ..store.clock import utc_now

_COLUMNS = (
    "file_key",
    "channel_id",
    "conversation_id",
    "filename",
    "content_type",
    "size",
    "sha256",
    "ttl_days",
    "expires_at",
    "created_at",
)


@dataclass(frozen=True, slots=True)
class FileRecord:
    file_key: str
    channel_id: str
    conversation_id: str
    filename: str
    content_type: str
    size: int
    sha256: str
    ttl_days: int | None
    expires_at: float | None
    """Unix seconds after which the object is removed (None: kept until its conversation is deleted)."""
    created_at: str


def _record(row: Any) -> FileRecord | None:
    if row is None:
        return None
    return FileRecord(**{name: row[name] for name in _COLUMNS})


class FileRecords(abc.ABC):
    @abc.abstractmethod
    async def add(self, record: FileRecord) -> None: ...

    @abc.abstractmethod
    async def get(self, file_key: str) -> FileRecord | None: ...

    @abc.abstractmethod
    async def set_expiry(self, file_key: str, expires_at: float) -> None: ...

    @abc.abstractmethod
    async def remove(self, file_key: str) -> None: ...

    @abc.abstractmethod
    async def expired(self, now: float, limit: int = 500) -> list[FileRecord]: ...

    @abc.abstractmethod
    async def orphans(self, limit: int = 500) -> list[FileRecord]:
        """Records whose conversation no longer exists (it was hard-deleted)."""

    @abc.abstractmethod
    async def channel_bytes(self, channel_id: str) -> int: ...

    @abc.abstractmethod
    async def secret(self, name: str) -> str:
        """The deployment secret ``name``, made on first use; every process reads the same one."""


class SQLiteFileRecords(FileRecords):
    def __init__(self, store: SQLiteStore) -> None:
        self.store = store

    async def add(self, record: FileRecord) -> None:
        marks = ",".join("?" * len(_COLUMNS))
        values = tuple(getattr(record, c) for c in _COLUMNS)
        await self.store._write(
            # the column names are the constant _COLUMNS and the marks "?"; every value is bound
            lambda conn: conn.execute(f"INSERT INTO files ({','.join(_COLUMNS)}) VALUES ({marks})", values)  # nosec B608
        )

    async def get(self, file_key: str) -> FileRecord | None:
        return await self.store._read(
            lambda conn: _record(
                conn.execute("SELECT * FROM files WHERE file_key = ?", (file_key,)).fetchone()
            )
        )

    async def set_expiry(self, file_key: str, expires_at: float) -> None:
        await self.store._write(
            lambda conn: conn.execute(
                "UPDATE files SET expires_at = ? WHERE file_key = ?", (expires_at, file_key)
            )
        )

    async def remove(self, file_key: str) -> None:
        await self.store._write(
            lambda conn: conn.execute("DELETE FROM files WHERE file_key = ?", (file_key,))
        )

    async def expired(self, now: float, limit: int = 500) -> list[FileRecord]:
        def run(conn: sqlite3.Connection) -> list[FileRecord]:
            rows = conn.execute(
                "SELECT * FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?", (now, limit)
            ).fetchall()
            return [r for r in map(_record, rows) if r is not None]

        return await self.store._read(run)

    async def orphans(self, limit: int = 500) -> list[FileRecord]:
        def run(conn: sqlite3.Connection) -> list[FileRecord]:
            rows = conn.execute(
                "SELECT * FROM files f WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = f.conversation_id)"
                " LIMIT ?",
                (limit,),
            ).fetchall()
            return [r for r in map(_record, rows) if r is not None]

        return await self.store._read(run)

    async def channel_bytes(self, channel_id: str) -> int:
        return await self.store._read(
            lambda conn: int(
                conn.execute(
                    "SELECT COALESCE(SUM(size), 0) FROM files WHERE channel_id = ?", (channel_id,)
                ).fetchone()[0]
            )
        )

    async def secret(self, name: str) -> str:
        def run(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO deployment_secrets (name, value, created_at) VALUES (?, ?, ?)",
                (name, secrets.token_urlsafe(32), utc_now()),
            )
            return str(
                conn.execute("SELECT value FROM deployment_secrets WHERE name = ?", (name,)).fetchone()[0]
            )

        return await self.store._write(run)


class PostgresFileRecords(FileRecords):
    def __init__(self, store: Any) -> None:
        self.store = store

    async def add(self, record: FileRecord) -> None:
        marks = ",".join(f"${i}" for i in range(1, len(_COLUMNS) + 1))
        await self.store.pool.execute(
            f"INSERT INTO files ({','.join(_COLUMNS)}) VALUES ({marks})",  # nosec B608: constant columns, bound values
            *(getattr(record, c) for c in _COLUMNS),
        )

    async def get(self, file_key: str) -> FileRecord | None:
        return _record(await self.store.pool.fetchrow("SELECT * FROM files WHERE file_key = $1", file_key))

    async def set_expiry(self, file_key: str, expires_at: float) -> None:
        await self.store.pool.execute(
            "UPDATE files SET expires_at = $1 WHERE file_key = $2", expires_at, file_key
        )

    async def remove(self, file_key: str) -> None:
        await self.store.pool.execute("DELETE FROM files WHERE file_key = $1", file_key)

    async def expired(self, now: float, limit: int = 500) -> list[FileRecord]:
        rows = await self.store.pool.fetch(
            "SELECT * FROM files WHERE expires_at IS NOT NULL AND expires_at <= $1 LIMIT $2", now, limit
        )
        return [r for r in map(_record, rows) if r is not None]

    async def orphans(self, limit: int = 500) -> list[FileRecord]:
        rows = await self.store.pool.fetch(
            "SELECT * FROM files f WHERE NOT EXISTS (SELECT 1 FROM conversations c WHERE c.id = f.conversation_id)"
            " LIMIT $1",
            limit,
        )
        return [r for r in map(_record, rows) if r is not None]

    async def channel_bytes(self, channel_id: str) -> int:
        return int(
            await self.store.pool.fetchval(
                "SELECT COALESCE(SUM(size), 0) FROM files WHERE channel_id = $1", channel_id
            )
        )

    async def secret(self, name: str) -> str:
        await self.store.pool.execute(
            "INSERT INTO deployment_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
            name,
            secrets.token_urlsafe(32),
            utc_now(),
        )
        return str(
            await self.store.pool.fetchval("SELECT value FROM deployment_secrets WHERE name = $1", name)
        )


def records_for(store: Store) -> FileRecords:
    """The file records of ``store`` (SQLite or PostgreSQL)."""
    from ..store.sqlite import SQLiteStore

    if isinstance(store, SQLiteStore):
        return SQLiteFileRecords(store)
    if type(store).__name__ == "PostgresStore":
        return PostgresFileRecords(store)
    raise TypeError(f"file records are not implemented for {type(store).__name__}")
