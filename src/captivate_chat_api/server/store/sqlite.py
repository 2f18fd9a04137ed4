"""SQLite store: WAL mode, one writer thread (group commit), one reader thread.

Each operation runs as one function in a dedicated thread (the stdlib ``sqlite3`` driver), so a write is
never interleaved with another coroutine's statements. Writes are serialized by the single writer thread,
which is also what makes ``seq`` assignment atomic; every write queued while a transaction ran is committed
in the next one, and the batch comes back to the loop at once, in commit order (:mod:`.sqlite_writer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from .base import (
    AgentTokenInfo,
    ApiKeyInfo,
    Channel,
    ConversationPage,
    ConversationRecord,
    ListQuery,
    NewEvent,
    Store,
    StoredEvent,
    new_stored_event,
)
from .clock import utc_now
from .migrate import pending
from .query import matches_query, sqlite_where
from .rows import (
    CONVERSATION_COLUMNS,
    EVENT_COLUMNS,
    channel_row,
    conversation_of,
    conversation_row,
    dumps,
    event_of,
    event_row,
    key_row,
    token_row,
)
from .rules import (
    check_editable,
    deduplicates,
    edited_payload,
    empty_page,
    merged_channel,
    merged_metadata,
    only_appends,
    page_from,
    page_of,
    page_window,
    require_live,
    retry_of,
    transition_allowed,
    transitioned,
)
from .sqlite_writer import WriterThread

T = TypeVar("T")
log = logging.getLogger("captivate_chat_api.server.store")
CHECKPOINT_INTERVAL = 1.0
CHECKPOINT_BACKSTOP_PAGES = 20_000
SYNCHRONOUS_LEVELS = ("OFF", "NORMAL", "FULL", "EXTRA")


_LIVE_CONVERSATION = "SELECT * FROM conversations WHERE id = ? AND channel_id = ? AND deleted_at IS NULL"
_BUMP_LIVE = (
    "UPDATE conversations SET last_seq = last_seq + ?, updated_at = ? WHERE id = ? AND channel_id = ?"
    " AND deleted_at IS NULL"
)
_BUMP = f"{_BUMP_LIVE} RETURNING {CONVERSATION_COLUMNS}"
"""Take the next seqs of a live conversation of the channel (none: unknown, deleted or foreign)."""
_BUMP_SEQ = f"{_BUMP_LIVE} RETURNING last_seq"
""":data:`_BUMP` for an append that needs no conversation record (only the seqs)."""


@functools.cache
def _bump_if(allowed_from: frozenset[str], returning: str) -> tuple[str, tuple[str, ...]]:
    """:data:`_BUMP` only in one of those hand-off states, returning those columns: the statement, and the
    states to bind."""
    marks = ",".join("?" * len(allowed_from))
    # Only "?" placeholders and our column lists are formatted in; every value is a bound parameter.
    sql = f"{_BUMP_LIVE} AND handoff IN ({marks}) RETURNING {returning}"  # nosec B608
    return sql, tuple(sorted(allowed_from))


_BUMP_FIRST = (
    f"{_BUMP_LIVE} AND NOT EXISTS (SELECT 1 FROM events INDEXED BY events_by_client_msg_id"  # nosec B608
    " WHERE conversation_id = ? AND client_msg_id = ? AND client_msg_id IS NOT NULL)"
    f" RETURNING {CONVERSATION_COLUMNS}"
)
""":data:`_BUMP` for a user message whose ``client_msg_id`` no event of the conversation carries yet (the
common case: it cannot be a retry, :func:`.rules.retry_of`), in the same statement as the look for one;
no row: the conversation is gone, or an earlier event has that id (then the rule decides)."""

_OWNED = "EXISTS (SELECT 1 FROM conversations WHERE id = ? AND channel_id = ?)"
"""An events query's tenant scope: the conversation is the channel's (its two parameters: id, channel)."""


class SQLiteStore(Store):
    def __init__(self, path: str, *, synchronous: str = "NORMAL", busy_timeout: float = 5.0) -> None:
        level = synchronous.upper()
        if level not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}")
        self.path = path
        self.synchronous = level
        self.busy_timeout = busy_timeout
        """Seconds a write waits for the database's write lock (held by another process); a write that
        already waited this long in line fails at once. Then SQLITE_BUSY (503). Reads never wait (WAL)."""
        self._memory = path == ":memory:"
        self._writer: WriterThread | None = None
        self._reader: ThreadPoolExecutor | None = None
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._checkpointer: ThreadPoolExecutor | None = None
        self._checkpoints: asyncio.Task[None] | None = None

    # plumbing

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=self.busy_timeout
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        if not self._memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        return conn

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` in the next group-committed transaction (see :mod:`.sqlite_writer`)."""
        if self._writer is None:
            raise RuntimeError("store is not open")
        # queued behind writes that each waited for a lock held elsewhere: fails at once past the deadline
        return await self._writer.write(fn, *args, deadline=time.monotonic() + self.busy_timeout)

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        if self._reader is None:  # :memory: has one connection: the writer's
            return await self._writer.call(fn, *args)
        conn = self._rconn
        return await asyncio.get_running_loop().run_in_executor(self._reader, lambda: fn(conn, *args))

    async def open(self) -> None:
        if not self._memory:
            Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        writer = WriterThread(self._connect)
        await writer.start()
        self._writer = writer
        self._wconn = writer.conn
        await writer.call(self._migrate)
        if not self._memory:
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="sqlite-reader")
            self._rconn = await asyncio.get_running_loop().run_in_executor(self._reader, self._connect)
            await writer.call(
                lambda conn: conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_BACKSTOP_PAGES}")
            )
            self._start_checkpoints()

    def _start_checkpoints(self) -> None:
        """Checkpoint the WAL from a thread of its own, so no commit on the writer pays for it.

        SQLite's automatic checkpoint runs inside a commit (every 1000 pages): a 20-30 ms stall of the
        writer here. The writer keeps a far larger automatic threshold only as a backstop.
        """
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_loop())

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._checkpointer is not None
        conn = await loop.run_in_executor(self._checkpointer, self._connect)
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL)
                try:
                    await loop.run_in_executor(
                        self._checkpointer, lambda: conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    )
                except sqlite3.Error as exc:
                    log.warning("WAL checkpoint failed: %s", exc)
        finally:
            await loop.run_in_executor(self._checkpointer, conn.close)

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for migration in pending("sqlite", applied):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in migration.sql.split(";\n"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, utc_now()),
                )
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    async def schema_version(self) -> int:
        return await self._read(
            lambda c: c.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
        )

    async def close(self) -> None:
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpoints
            self._checkpoints = None
        if self._checkpointer is not None:
            self._checkpointer.shutdown(wait=True)
            self._checkpointer = None
        if self._reader is not None and self._rconn is not None:
            await asyncio.get_running_loop().run_in_executor(self._reader, self._rconn.close)
            self._reader.shutdown(wait=True)
        if self._writer is not None:
            await self._writer.stop()
        self._reader = self._writer = None
        self._rconn = self._wconn = None

    async def ping(self) -> None:
        # reads the file (``SELECT 1`` would not), so a corrupt database fails here
        await self._read(lambda c: c.execute("SELECT max(version) FROM schema_migrations").fetchone())

    async def ping_write(self) -> None:
        # a real (no-op) write through the writer: a held lock, a full disk or a read-only file fail here
        await self._write(
            lambda c: c.execute(
                "UPDATE schema_migrations SET applied_at = applied_at WHERE version = (SELECT max(version) FROM schema_migrations)"
            )
        )

    # channels and keys

    async def create_channel_with_key(
        self, name: str, key_hash: str, prefix: str, agent: str = "demo"
    ) -> Channel:
        def run(conn: sqlite3.Connection) -> Channel:
            channel = Channel(id=f"ch_{secrets.token_hex(8)}", name=name, agent=agent)
            now = utc_now()
            conn.execute(
                "INSERT INTO channels (id, name, agent, created_at) VALUES (?, ?, ?, ?)",
                (channel.id, name, agent, now),
            )
            conn.execute(
                "INSERT INTO api_keys (id, channel_id, key_hash, prefix, label, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (f"key_{secrets.token_hex(6)}", channel.id, key_hash, prefix, name, now),
            )
            return channel

        return await self._write(run)

    async def add_key(self, channel_id: str, key_hash: str, prefix: str, label: str = "") -> ApiKeyInfo:
        def run(conn: sqlite3.Connection) -> ApiKeyInfo:
            key_id = f"key_{secrets.token_hex(6)}"
            conn.execute(
                "INSERT INTO api_keys (id, channel_id, key_hash, prefix, label, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (key_id, channel_id, key_hash, prefix, label, utc_now()),
            )
            return key_row(conn.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)).fetchone())

        return await self._write(run)

    async def channel_for_key_hash(self, key_hash: str) -> Channel | None:
        def run(conn: sqlite3.Connection) -> Channel | None:
            row = conn.execute(
                "SELECT c.* FROM api_keys k JOIN channels c ON c.id = k.channel_id"
                " WHERE k.key_hash = ? AND k.revoked_at IS NULL",
                (key_hash,),
            ).fetchone()
            return channel_row(row) if row else None

        return await self._read(run)

    async def key_exists(self, key_hash: str) -> bool:
        return await self._read(
            lambda c: (
                c.execute("SELECT 1 FROM api_keys WHERE key_hash = ?", (key_hash,)).fetchone() is not None
            )
        )

    async def list_keys(self) -> list[ApiKeyInfo]:
        return await self._read(
            lambda c: [key_row(r) for r in c.execute("SELECT * FROM api_keys ORDER BY created_at, id")]
        )

    async def revoke_key(self, key_id_or_prefix: str) -> ApiKeyInfo | None:
        def run(conn: sqlite3.Connection) -> ApiKeyInfo | None:
            rows = conn.execute(
                "SELECT * FROM api_keys WHERE id = ? OR prefix = ?", (key_id_or_prefix, key_id_or_prefix)
            ).fetchall()
            if len(rows) != 1:
                return None
            conn.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (utc_now(), rows[0]["id"]),
            )
            return key_row(conn.execute("SELECT * FROM api_keys WHERE id = ?", (rows[0]["id"],)).fetchone())

        return await self._write(run)

    async def get_channel(self, channel_id: str) -> Channel | None:
        def run(conn: sqlite3.Connection) -> Channel | None:
            row = conn.execute("SELECT * FROM channels WHERE id = ?", (channel_id,)).fetchone()
            return channel_row(row) if row else None

        return await self._read(run)

    async def update_channel(
        self,
        channel_id: str,
        *,
        agent: str | None = None,
        agents: dict[str, str] | None = None,
        webhook_secret: str | None = None,
    ) -> Channel | None:
        def run(conn: sqlite3.Connection) -> Channel | None:
            row = conn.execute("SELECT * FROM channels WHERE id = ?", (channel_id,)).fetchone()
            if row is None:
                return None
            new = merged_channel(channel_row(row), agent=agent, agents=agents, webhook_secret=webhook_secret)
            conn.execute(
                "UPDATE channels SET agent = ?, agents = ?, webhook_secret = ? WHERE id = ?",
                (new.agent, dumps(new.agents), new.webhook_secret, channel_id),
            )
            return channel_row(conn.execute("SELECT * FROM channels WHERE id = ?", (channel_id,)).fetchone())

        return await self._write(run)

    async def add_agent_token(
        self, channel_id: str, token_hash: str, prefix: str, role: str, label: str = ""
    ) -> AgentTokenInfo:
        def run(conn: sqlite3.Connection) -> AgentTokenInfo:
            token_id = f"tok_{secrets.token_hex(6)}"
            conn.execute(
                "INSERT INTO agent_tokens (id, channel_id, token_hash, prefix, role, label, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_id, channel_id, token_hash, prefix, role, label, utc_now()),
            )
            return token_row(conn.execute("SELECT * FROM agent_tokens WHERE id = ?", (token_id,)).fetchone())

        return await self._write(run)

    async def channel_for_agent_token(
        self, token_hash: str, role: str
    ) -> tuple[Channel, AgentTokenInfo] | None:
        def run(conn: sqlite3.Connection) -> tuple[Channel, AgentTokenInfo] | None:
            token = conn.execute(
                "SELECT * FROM agent_tokens WHERE token_hash = ? AND role = ? AND revoked_at IS NULL",
                (token_hash, role),
            ).fetchone()
            if token is None:
                return None
            channel = conn.execute("SELECT * FROM channels WHERE id = ?", (token["channel_id"],)).fetchone()
            return (channel_row(channel), token_row(token)) if channel else None

        return await self._read(run)

    async def list_agent_tokens(self, channel_id: str | None = None) -> list[AgentTokenInfo]:
        return await self._read(
            lambda c: [
                token_row(r)
                for r in c.execute(
                    "SELECT * FROM agent_tokens WHERE ? IS NULL OR channel_id = ? ORDER BY created_at, id",
                    (channel_id, channel_id),
                )
            ]
        )

    async def revoke_agent_token(self, token_id_or_prefix: str) -> AgentTokenInfo | None:
        def run(conn: sqlite3.Connection) -> AgentTokenInfo | None:
            rows = conn.execute(
                "SELECT * FROM agent_tokens WHERE id = ? OR prefix = ?",
                (token_id_or_prefix, token_id_or_prefix),
            ).fetchall()
            if len(rows) != 1:
                return None
            conn.execute(
                "UPDATE agent_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (utc_now(), rows[0]["id"]),
            )
            return token_row(
                conn.execute("SELECT * FROM agent_tokens WHERE id = ?", (rows[0]["id"],)).fetchone()
            )

        return await self._write(run)

    # conversations

    async def create_conversation(
        self,
        channel_id: str,
        conversation_id: str,
        user_id: str,
        user_basic_info: dict[str, Any],
        metadata: dict[str, Any],
        private_metadata: dict[str, Any],
    ) -> ConversationRecord:
        def run(conn: sqlite3.Connection) -> ConversationRecord:
            now = utc_now()
            conn.execute(
                "INSERT INTO conversations (id, channel_id, user_id, user_basic_info, metadata, private_metadata,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    channel_id,
                    user_id,
                    dumps(user_basic_info),
                    dumps(metadata),
                    dumps(private_metadata),
                    now,
                    now,
                ),
            )
            return conversation_row(
                conn.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            )

        return await self._write(run)

    async def get_conversation(self, channel_id: str, conversation_id: str) -> ConversationRecord | None:
        def run(conn: sqlite3.Connection) -> ConversationRecord | None:
            row = conn.execute(_LIVE_CONVERSATION, (conversation_id, channel_id)).fetchone()
            return conversation_row(row) if row else None

        return await self._read(run)

    async def update_metadata(
        self, channel_id: str, conversation_id: str, public: dict[str, Any], private: dict[str, Any]
    ) -> ConversationRecord | None:
        def run(conn: sqlite3.Connection) -> ConversationRecord | None:
            row = conn.execute(_LIVE_CONVERSATION, (conversation_id, channel_id)).fetchone()
            if row is None:
                return None
            metadata, private_metadata = merged_metadata(conversation_row(row), public, private)
            conn.execute(
                "UPDATE conversations SET metadata = ?, private_metadata = ?, updated_at = ? WHERE id = ?",
                (dumps(metadata), dumps(private_metadata), utc_now(), conversation_id),
            )
            return conversation_row(
                conn.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            )

        return await self._write(run)

    async def delete_conversation(self, channel_id: str, conversation_id: str, soft: bool) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            if soft:
                cursor = conn.execute(
                    "UPDATE conversations SET deleted_at = ? WHERE id = ? AND channel_id = ? AND deleted_at IS NULL",
                    (utc_now(), conversation_id, channel_id),
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM conversations WHERE id = ? AND channel_id = ?", (conversation_id, channel_id)
                )
            return cursor.rowcount > 0

        return await self._write(run)

    async def delete_user_conversations(self, channel_id: str, user_id: str, soft: bool) -> int:
        def run(conn: sqlite3.Connection) -> int:
            if soft:
                cursor = conn.execute(
                    "UPDATE conversations SET deleted_at = ? WHERE channel_id = ? AND user_id = ? AND deleted_at IS NULL",
                    (utc_now(), channel_id, user_id),
                )
            else:
                cursor = conn.execute(
                    "DELETE FROM conversations WHERE channel_id = ? AND user_id = ?", (channel_id, user_id)
                )
            return cursor.rowcount

        return await self._write(run)

    async def list_conversations(self, query: ListQuery) -> ConversationPage:
        """Paged in the database: filter and search as SQL conditions, COUNT for the total, LIMIT/OFFSET
        for the page (v1, without a limit: the newest :data:`V1_MAX_CONVERSATIONS`)."""
        limit, offset = page_window(query)
        pushed = sqlite_where(query.filter, query.search)

        def run(conn: sqlite3.Connection) -> ConversationPage:
            marks = ",".join("?" * len(query.channel_ids))
            where = f"channel_id IN ({marks}) AND user_id = ? AND deleted_at IS NULL"
            params: list[Any] = [*query.channel_ids, query.user_id]
            if pushed is None:  # a filter on an object or list value: compared in Python
                rows = conn.execute(
                    f"SELECT * FROM conversations WHERE {where} ORDER BY updated_at DESC, id",  # nosec B608
                    params,
                ).fetchall()
                found = [
                    c
                    for c in map(conversation_row, rows)
                    if matches_query(c.metadata, query.filter, query.search)
                ]
                return page_from(query, found)
            conditions, extra = pushed
            where = " AND ".join([where, *conditions])
            # Only "?" placeholders and fixed SQL are formatted in; every value is a bound parameter.
            total = conn.execute(
                f"SELECT count(*) FROM conversations WHERE {where}",  # nosec B608
                [*params, *extra],
            ).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM conversations WHERE {where} ORDER BY updated_at DESC, id LIMIT ? OFFSET ?",  # nosec B608
                [*params, *extra, limit, offset],
            ).fetchall()
            return page_of(query, [conversation_row(r) for r in rows], total)

        if not query.channel_ids:
            return empty_page(query)
        return await self._read(run)

    async def list_handoff(self, channel_id: str, states: list[str]) -> list[ConversationRecord]:
        def run(conn: sqlite3.Connection) -> list[ConversationRecord]:
            marks = ",".join("?" * len(states))
            # Only "?" placeholders are formatted in; every value is a bound parameter.
            rows = conn.execute(
                f"SELECT * FROM conversations WHERE channel_id = ? AND handoff IN ({marks}) AND deleted_at IS NULL"  # nosec B608
                " ORDER BY updated_at, id",
                (channel_id, *states),
            ).fetchall()
            return [conversation_row(r) for r in rows]

        if not states:
            return []
        return await self._read(run)

    async def transition(
        self,
        channel_id: str,
        conversation_id: str,
        *,
        allowed_from: frozenset[str],
        handoff: str | None = None,
        human_agent: str | None = None,
        agent: str | None = None,
        events: list[NewEvent],
        require_human_agent: str | None = None,
        metadata: tuple[dict[str, Any], dict[str, Any]] | None = None,
    ) -> tuple[ConversationRecord, list[StoredEvent]] | None:
        def run(conn: sqlite3.Connection) -> tuple[ConversationRecord, list[StoredEvent]] | None:
            if events and metadata is None and only_appends(handoff, human_agent, agent, require_human_agent):
                # an AI agent's reply: the state guard and the seqs in one statement
                appended = self._append_if(conn, channel_id, conversation_id, events, allowed_from)
                return None if appended is None else (appended[1], appended[0])
            row = conn.execute(_LIVE_CONVERSATION, (conversation_id, channel_id)).fetchone()
            current = conversation_row(require_live(row, conversation_id))
            if not transition_allowed(current, allowed_from, require_human_agent):
                return None
            changed = transitioned(current, handoff=handoff, human_agent=human_agent, agent=agent)
            if changed != current:  # an agent's reply changes nothing but the log: no UPDATE for it
                conn.execute(
                    "UPDATE conversations SET handoff = ?, human_agent = ?, agent = ?, has_livechat = ?"
                    " WHERE id = ?",
                    (
                        changed.handoff,
                        changed.human_agent,
                        changed.agent,
                        changed.has_livechat,
                        conversation_id,
                    ),
                )
            if metadata is not None:  # in the same step as the guard: a refused change writes nothing
                public, private = merged_metadata(changed, *metadata)
                changed = dataclasses.replace(
                    changed, metadata=public, private_metadata=private, updated_at=utc_now()
                )
                conn.execute(
                    "UPDATE conversations SET metadata = ?, private_metadata = ?, updated_at = ? WHERE id = ?",
                    (
                        dumps(changed.metadata),
                        dumps(changed.private_metadata),
                        changed.updated_at,
                        conversation_id,
                    ),
                )
            if not events:
                return changed, []
            stored, after = self._append_to(conn, conversation_id, events, changed)
            return after, stored

        return await self._write(run)

    # the event log

    @staticmethod
    def _insert(
        conn: sqlite3.Connection, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> list[StoredEvent]:
        """:meth:`_append` without the conversation: only its ``last_seq`` comes back (no record built)."""
        now = utc_now()
        row = conn.execute(_BUMP_SEQ, (len(events), now, conversation_id, channel_id)).fetchone()
        last_seq: int = require_live(row, conversation_id)[0]
        return SQLiteStore._insert_events(conn, conversation_id, events, last_seq - len(events), now)

    @staticmethod
    def _append(
        conn: sqlite3.Connection, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> tuple[list[StoredEvent], ConversationRecord]:
        """Insert ``events`` with the next seqs; also returns the conversation as it is afterwards (the
        agent turn that follows needs no read of its own). One ``UPDATE ... RETURNING`` checks that the
        conversation is live and takes the seqs; ConversationNotFound if it is not."""
        now = utc_now()
        row = conn.execute(_BUMP, (len(events), now, conversation_id, channel_id)).fetchone()
        after = conversation_of(require_live(row, conversation_id))
        return SQLiteStore._insert_events(
            conn, conversation_id, events, after.last_seq - len(events), now
        ), after

    @staticmethod
    def _bump_guarded(
        conn: sqlite3.Connection,
        channel_id: str,
        conversation_id: str,
        count: int,
        now: str,
        allowed_from: frozenset[str],
        returning: str,
    ) -> sqlite3.Row | None:
        """Take ``count`` seqs only while the conversation's hand-off state is one of ``allowed_from`` (the
        guard in the same statement): its row (``returning``), or None in another state (nothing written).
        ConversationNotFound if it is gone."""
        sql, states = _bump_if(allowed_from, returning)
        row: sqlite3.Row | None = conn.execute(
            sql, (count, now, conversation_id, channel_id, *states)
        ).fetchone()
        if row is None:  # gone (ConversationNotFound), or in another state (None)
            require_live(
                conn.execute(_LIVE_CONVERSATION, (conversation_id, channel_id)).fetchone(), conversation_id
            )
        return row

    @staticmethod
    def _append_if(
        conn: sqlite3.Connection,
        channel_id: str,
        conversation_id: str,
        events: list[NewEvent],
        allowed_from: frozenset[str],
    ) -> tuple[list[StoredEvent], ConversationRecord] | None:
        """:meth:`_append` only while the conversation's hand-off state is one of ``allowed_from``; None
        when it is in another state (nothing written)."""
        now = utc_now()
        row = SQLiteStore._bump_guarded(
            conn, channel_id, conversation_id, len(events), now, allowed_from, CONVERSATION_COLUMNS
        )
        if row is None:
            return None
        after = conversation_of(row)
        return SQLiteStore._insert_events(
            conn, conversation_id, events, after.last_seq - len(events), now
        ), after

    @staticmethod
    def _append_events_if(
        conn: sqlite3.Connection,
        channel_id: str,
        conversation_id: str,
        events: list[NewEvent],
        allowed_from: frozenset[str],
    ) -> list[StoredEvent] | None:
        """:meth:`_append_if` without the conversation: only its ``last_seq`` comes back (no JSON column
        parsed, no record built)."""
        now = utc_now()
        row = SQLiteStore._bump_guarded(
            conn, channel_id, conversation_id, len(events), now, allowed_from, "last_seq"
        )
        if row is None:
            return None
        return SQLiteStore._insert_events(conn, conversation_id, events, row[0] - len(events), now)

    @staticmethod
    def _append_to(
        conn: sqlite3.Connection, conversation_id: str, events: list[NewEvent], record: ConversationRecord
    ) -> tuple[list[StoredEvent], ConversationRecord]:
        """:meth:`_append` for a conversation this transaction has read already (``record``)."""
        now = utc_now()
        stored = SQLiteStore._insert_events(conn, conversation_id, events, record.last_seq, now)
        seq = record.last_seq + len(events)
        conn.execute(
            "UPDATE conversations SET last_seq = ?, updated_at = ? WHERE id = ?", (seq, now, conversation_id)
        )
        return stored, dataclasses.replace(record, last_seq=seq, updated_at=now)

    @staticmethod
    def _insert_events(
        conn: sqlite3.Connection, conversation_id: str, events: list[NewEvent], last_seq: int, now: str
    ) -> list[StoredEvent]:
        """The event rows, numbered from ``last_seq + 1``."""
        stored = []
        for seq, event in enumerate(events, last_seq + 1):
            conn.execute(
                "INSERT INTO events (conversation_id, seq, event_type, sender, message_id, client_msg_id, payload,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    conversation_id,
                    seq,
                    event.event_type,
                    event.sender,
                    event.message_id,
                    event.client_msg_id,
                    dumps(event.payload),
                    now,
                ),
            )
            stored.append(
                new_stored_event(
                    conversation_id,
                    seq,
                    event.event_type,
                    event.payload,
                    now,
                    event.sender,
                    event.message_id,
                    event.client_msg_id,
                )
            )
        return stored

    async def append_events(
        self, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> list[StoredEvent]:
        return await self._write(self._insert, channel_id, conversation_id, events)

    async def append_if(
        self, channel_id: str, conversation_id: str, events: list[NewEvent], *, allowed_from: frozenset[str]
    ) -> list[StoredEvent] | None:
        if not events:
            return await super().append_if(channel_id, conversation_id, events, allowed_from=allowed_from)
        return await self._write(self._append_events_if, channel_id, conversation_id, events, allowed_from)

    async def append_user_turn(
        self, channel_id: str, conversation_id: str, event: NewEvent
    ) -> tuple[StoredEvent, bool, ConversationRecord | None]:
        def run(conn: sqlite3.Connection) -> tuple[StoredEvent, bool, ConversationRecord | None]:
            # retry_of (the rule) decides; the look and the append are one step of the one writer thread
            if deduplicates(event):
                # no earlier event with the id (the rule's answer is then "new"): take the seq at once, the
                # look in the same statement (two statements a message, not three)
                now = utc_now()
                row = conn.execute(
                    _BUMP_FIRST, (1, now, conversation_id, channel_id, conversation_id, event.client_msg_id)
                ).fetchone()
                if row is not None:
                    after = conversation_of(row)
                    (stored,) = self._insert_events(conn, conversation_id, [event], after.last_seq - 1, now)
                    return stored, True, after
                # INDEXED BY: without statistics SQLite would walk the conversation's whole log instead.
                earlier = conn.execute(
                    "SELECT * FROM events INDEXED BY events_by_client_msg_id"
                    " WHERE conversation_id = ? AND client_msg_id = ? AND client_msg_id IS NOT NULL ORDER BY seq",
                    (conversation_id, event.client_msg_id),
                )
                previous = retry_of(event, map(event_row, earlier))
                if previous is not None:
                    require_live(
                        conn.execute(_LIVE_CONVERSATION, (conversation_id, channel_id)).fetchone(),
                        conversation_id,
                    )
                    return previous, False, None
            (stored,), record = self._append(conn, channel_id, conversation_id, [event])
            return stored, True, record

        return await self._write(run)

    async def events_after(
        self, channel_id: str, conversation_id: str, after_seq: int, limit: int = 1000
    ) -> list[StoredEvent]:
        return await self._read(
            lambda c: [
                event_of(r)
                for r in c.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE conversation_id = ? AND {_OWNED} AND seq > ?"  # nosec B608
                    " ORDER BY seq LIMIT ?",
                    (conversation_id, conversation_id, channel_id, after_seq, limit),
                )
            ]
        )

    async def messages(self, channel_id: str, conversation_id: str) -> list[StoredEvent]:
        return await self._read(
            lambda c: [
                event_of(r)
                for r in c.execute(
                    f"SELECT {EVENT_COLUMNS} FROM events WHERE conversation_id = ? AND {_OWNED}"  # nosec B608
                    " AND sender IS NOT NULL ORDER BY seq",
                    (conversation_id, conversation_id, channel_id),
                )
            ]
        )

    async def edit_message(
        self,
        channel_id: str,
        conversation_id: str,
        message_id: str,
        content: Any,
        *,
        senders: frozenset[str] | None = None,
    ) -> StoredEvent | None:
        def run(conn: sqlite3.Connection) -> StoredEvent | None:
            row = conn.execute(
                "SELECT * FROM events INDEXED BY events_by_message_id"
                f" WHERE conversation_id = ? AND {_OWNED} AND message_id = ? AND message_id IS NOT NULL"  # nosec B608
                " AND sender IS NOT NULL",
                (conversation_id, conversation_id, channel_id, message_id),
            ).fetchone()
            if row is None:
                return None
            check_editable(row["sender"], senders)
            payload = edited_payload(json.loads(row["payload"]), content)
            conn.execute(
                "UPDATE events SET payload = ?, edited_at = ? WHERE conversation_id = ? AND seq = ?",
                (dumps(payload), utc_now(), conversation_id, row["seq"]),
            )
            return event_row(
                conn.execute(
                    "SELECT * FROM events WHERE conversation_id = ? AND seq = ?",
                    (conversation_id, row["seq"]),
                ).fetchone()
            )

        return await self._write(run)
