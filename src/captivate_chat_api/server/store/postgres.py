"""PostgreSQL store (asyncpg): the same interface and the same migrations (in its own dialect) as SQLite.

``seq`` is assigned under the conversation row's lock (``UPDATE … RETURNING last_seq``), so appends from
any number of gateway processes get consecutive numbers. Appends go through the store's writer
(:mod:`.postgres_writer`): every append queued while the previous statement ran goes in one autocommitted
statement, on a connection of its own; what the writer hands back (a row locked by someone else, a batch
the server refused) runs here on the pool, one statement (the UPDATE and the INSERT in one CTE) or one
transaction each. The pool runs no reset query on release. A URL may carry ``?schema=NAME`` to keep a
deployment (or a test run) in its own schema, created if missing.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from ...errors import ConversationNotFound
from ..limits import without_slot
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
)
from .clock import utc_now
from .migrate import pending
from .postgres_writer import ALONE, Appended, AppendWriter, stored_events
from .query import postgres_where
from .rows import channel_row, conversation_row, dumps, event_row, key_row, loads, token_row
from .rules import (
    check_editable,
    deduplicates,
    edited_payload,
    empty_page,
    merged_channel,
    merged_metadata,
    only_appends,
    page_of,
    page_window,
    require_live,
    retry_of,
    transition_allowed,
    transitioned,
)

Conn = Any  # asyncpg.Connection (untyped library)


def _one_line(record: logging.LogRecord) -> bool:
    """asyncpg's pool logs each failed reconnect with a traceback: during an outage, one line each instead."""
    if record.exc_info and record.exc_info[1] is not None:
        record.msg = f"{record.getMessage()} ({type(record.exc_info[1]).__name__})"
        record.args = None
        record.exc_info = None
    return True


logging.getLogger("asyncpg.pool").addFilter(_one_line)
LIVE = "SELECT * FROM conversations WHERE id = $1 AND channel_id = $2 AND deleted_at IS NULL"
OWNED = "EXISTS (SELECT 1 FROM conversations WHERE id = $1 AND channel_id = $2)"
"""An events query's tenant scope: the conversation ($1) is the channel's ($2)."""
CLOSE_TIMEOUT = 3.0
log = logging.getLogger("captivate_chat_api.server.store")
MIGRATION_LOCK = 7_340_112  # pg_advisory_xact_lock key: one process migrates at a time

T = TypeVar("T")


def split_url(url: str) -> tuple[str, str | None]:
    """The DSN without our ``schema`` parameter, and the schema."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    schema = query.pop("schema", None)
    if schema is not None and not schema.replace("_", "").isalnum():
        raise ValueError("schema must be letters, digits and underscores")
    return urlunsplit(parts._replace(query=urlencode(query))), schema


async def keep_session(conn: Conn) -> None:
    """The pool's reset on release, which is a round trip of its own (``RESET ALL``, ``UNLISTEN *``, ...)
    by default: nothing here changes session state (no SET, LISTEN, cursors or session advisory locks), and
    an open transaction is still rolled back by the pool itself."""


APPEND = (
    # One statement, so atomic without BEGIN/COMMIT: the UPDATE takes the conversation row's lock and the next
    # seqs; the INSERT writes the events with them. No row comes back for an unknown, deleted or foreign id.
    "WITH bump AS (UPDATE conversations SET last_seq = last_seq + $3, updated_at = $4"
    " WHERE id = $1 AND channel_id = $2 AND deleted_at IS NULL{guard} RETURNING *)"
    " INSERT INTO events (conversation_id, seq, event_type, sender, message_id, client_msg_id, payload, created_at)"
    " SELECT $1, bump.last_seq - $3 + e.ord, e.event_type, e.sender, e.message_id, e.client_msg_id, e.payload, $4"
    " FROM bump, unnest($5::text[], $6::text[], $7::text[], $8::text[], $9::text[])"
    " WITH ORDINALITY AS e(event_type, sender, message_id, client_msg_id, payload, ord)"
    " RETURNING (SELECT row_to_json(bump) FROM bump)::text AS conversation"
)
APPEND_EVENTS = APPEND.format(guard="")
APPEND_GUARDED = APPEND.format(guard=" AND handoff = ANY($10::text[])")
"""An agent's reply: appended only while the conversation is in one of the allowed hand-off states."""

APPEND_ONCE = (
    # A user message with a client_msg_id, once: one autocommitted statement. Its CTEs share one snapshot,
    # which does not see what commits while the UPDATE waits for the row lock; so the UPDATE is also a
    # compare-and-set on last_seq (rechecked on the locked row): when another append got in between, nothing
    # is written and the caller runs the statement again with a new snapshot (that sees the other append).
    "WITH live AS (SELECT last_seq FROM conversations WHERE id = $1 AND channel_id = $2 AND deleted_at IS NULL),"
    " earlier AS (SELECT * FROM events WHERE conversation_id = $1 AND client_msg_id = $7 AND sender = 'user'"
    " AND payload::jsonb = $8::jsonb ORDER BY seq LIMIT 1),"
    " bump AS (UPDATE conversations SET last_seq = last_seq + 1, updated_at = $3"
    " WHERE id = $1 AND channel_id = $2 AND deleted_at IS NULL AND last_seq = (SELECT last_seq FROM live)"
    " AND NOT EXISTS (SELECT 1 FROM earlier) RETURNING *),"
    " added AS (INSERT INTO events (conversation_id, seq, event_type, sender, message_id, client_msg_id, payload,"
    " created_at) SELECT $1, bump.last_seq, $4, $5, $6, $7, $8, $3 FROM bump RETURNING seq)"
    " SELECT EXISTS (SELECT 1 FROM live) AS live, (SELECT row_to_json(earlier) FROM earlier)::text AS earlier,"
    " (SELECT row_to_json(bump) FROM bump WHERE EXISTS (SELECT 1 FROM added))::text AS conversation"
)
DEDUPE_ATTEMPTS = 3
"""Tries of :data:`APPEND_ONCE` before the transaction (only a conversation with concurrent writers loses one)."""


def append_args(conversation_id: str, channel_id: str, events: list[NewEvent], now: str) -> list[Any]:
    return [
        conversation_id,
        channel_id,
        len(events),
        now,
        [e.event_type for e in events],
        [e.sender for e in events],
        [e.message_id for e in events],
        [e.client_msg_id for e in events],
        [dumps(e.payload) for e in events],
    ]


def json_conversation(text: str) -> ConversationRecord:
    """A conversations row as ``row_to_json`` gives it (the JSON columns are TEXT: still strings in it)."""
    return conversation_row(loads(text))


class BoundedPool:
    """The asyncpg pool, with a bound on how long a request waits for a free connection (asyncpg's
    ``Pool.fetch`` & co. wait forever): past it, ``TimeoutError`` (503)."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._timeout = acquire_timeout

    def acquire(self) -> Any:
        return self._pool.acquire(timeout=self._timeout)

    async def execute(self, query: str, *args: Any) -> str:
        async with self.acquire() as conn:
            return str(await conn.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self.acquire() as conn:
            return list(await conn.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args)

    async def close(self) -> None:
        await self._pool.close()

    def terminate(self) -> None:
        self._pool.terminate()


class PostgresStore(Store):
    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        connect_timeout: float = 5.0,
        statement_timeout: float = 10.0,
        acquire_timeout: float = 5.0,
    ) -> None:
        self.dsn, self.schema = split_url(url)
        self._pool: BoundedPool | None = None
        self._writer: AppendWriter | None = None
        self._sizes = (min_size, max_size)
        self.query_loggers: list[Callable[[Any], None]] = []
        """asyncpg query loggers given every connection this store opens, the writer's too (tests count
        statements with them); add them before :meth:`open`."""
        self.timeouts = (connect_timeout, statement_timeout, acquire_timeout)
        """Seconds: connecting, one statement (server- and client-side: a silent network too), waiting for a
        pooled connection. Each fails the request with 503 instead of hanging it."""

    @property
    def pool(self) -> BoundedPool:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    @property
    def writer(self) -> AppendWriter:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    async def _prepared(self, conn: Conn) -> None:
        for logger in self.query_loggers:
            conn.add_query_logger(logger)

    async def open(self) -> None:
        connect_timeout, statement_timeout, acquire_timeout = self.timeouts
        settings = {"search_path": self.schema} if self.schema else {}
        settings["statement_timeout"] = str(int(statement_timeout * 1000))
        if self.schema:
            conn = await asyncpg.connect(self.dsn, timeout=connect_timeout)
            try:
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            except (asyncpg.UniqueViolationError, asyncpg.DuplicateSchemaError):
                pass  # another process created it at the same moment ("IF NOT EXISTS" is not atomic)
            finally:
                await conn.close()
        pool = await asyncpg.create_pool(
            self.dsn,
            min_size=self._sizes[0],
            max_size=self._sizes[1],
            server_settings=settings,
            timeout=connect_timeout,
            command_timeout=statement_timeout + 1.0,
            reset=keep_session,
            init=self._prepared,
        )
        self._pool = BoundedPool(pool, acquire_timeout)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL)"
            )
            applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for migration in pending("postgresql", applied):
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    utc_now(),
                )

        async def connect() -> Conn:
            conn = await asyncpg.connect(
                self.dsn,
                # one plan for the batch statement, made once per connection: re-planned for each batch
                # (PostgreSQL's default when a custom plan looks cheaper) it would cost more than it runs
                server_settings={**settings, "plan_cache_mode": "force_generic_plan"},
                timeout=connect_timeout,
                command_timeout=statement_timeout + 1.0,
            )
            await self._prepared(conn)
            return conn

        writer = AppendWriter(
            connect, statement_timeout=statement_timeout + 1.0, acquire_timeout=acquire_timeout
        )
        await writer.start()
        self._writer = writer

    async def close(self) -> None:
        """Close the pool; bounded: asyncpg's ``Pool.close`` waits for every connection to be released,
        for ever if one never is (a query cancelled mid-flight at shutdown), which kept loaded gateways
        from exiting on SIGTERM. After :data:`CLOSE_TIMEOUT` the rest is terminated. The writer first
        writes what is queued (as long again at most)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            await writer.close(CLOSE_TIMEOUT)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
            except TimeoutError:
                log.warning(
                    "PostgreSQL connections still busy after %g s at shutdown: terminated", CLOSE_TIMEOUT
                )
                pool.terminate()

    async def ping(self) -> None:
        await self.pool.fetchval("SELECT 1")

    async def ping_write(self) -> None:
        await self.pool.execute("UPDATE schema_migrations SET applied_at = applied_at WHERE version = 1")

    async def schema_version(self) -> int:
        return int(await self.pool.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations"))

    async def drop_schema(self) -> None:
        """Remove this store's schema and everything in it (tests)."""
        if not self.schema:
            raise RuntimeError("only a store opened with ?schema= can drop it")
        await self.pool.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    # channels and keys

    async def create_channel_with_key(
        self, name: str, key_hash: str, prefix: str, agent: str = "demo"
    ) -> Channel:
        channel_id, now = f"ch_{secrets.token_hex(8)}", utc_now()
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO channels (id, name, agent, created_at) VALUES ($1, $2, $3, $4)",
                channel_id,
                name,
                agent,
                now,
            )
            await conn.execute(
                "INSERT INTO api_keys (id, channel_id, key_hash, prefix, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                f"key_{secrets.token_hex(6)}",
                channel_id,
                key_hash,
                prefix,
                name,
                now,
            )
            return channel_row(await conn.fetchrow("SELECT * FROM channels WHERE id = $1", channel_id))

    async def add_key(self, channel_id: str, key_hash: str, prefix: str, label: str = "") -> ApiKeyInfo:
        row = await self.pool.fetchrow(
            "INSERT INTO api_keys (id, channel_id, key_hash, prefix, label, created_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " RETURNING *",
            f"key_{secrets.token_hex(6)}",
            channel_id,
            key_hash,
            prefix,
            label,
            utc_now(),
        )
        return key_row(row)

    async def channel_for_key_hash(self, key_hash: str) -> Channel | None:
        row = await self.pool.fetchrow(
            "SELECT c.* FROM api_keys k JOIN channels c ON c.id = k.channel_id WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
            key_hash,
        )
        return channel_row(row) if row else None

    async def key_exists(self, key_hash: str) -> bool:
        return bool(await self.pool.fetchval("SELECT 1 FROM api_keys WHERE key_hash = $1", key_hash))

    async def list_keys(self) -> list[ApiKeyInfo]:
        return [key_row(r) for r in await self.pool.fetch("SELECT * FROM api_keys ORDER BY created_at, id")]

    async def revoke_key(self, key_id_or_prefix: str) -> ApiKeyInfo | None:
        return await self._revoke("api_keys", key_id_or_prefix, key_row)

    async def _revoke(self, table: str, ident: str, mapper: Callable[[Any], T]) -> T | None:
        # ``table`` is one of two literals (api_keys, agent_tokens) from this class; values are bound ($1, $2).
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(f"SELECT * FROM {table} WHERE id = $1 OR prefix = $1 FOR UPDATE", ident)  # nosec B608
            if len(rows) != 1:
                return None
            row = await conn.fetchrow(
                f"UPDATE {table} SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1 RETURNING *",  # nosec B608
                rows[0]["id"],
                utc_now(),
            )
            return mapper(row)

    async def get_channel(self, channel_id: str) -> Channel | None:
        row = await self.pool.fetchrow("SELECT * FROM channels WHERE id = $1", channel_id)
        return channel_row(row) if row else None

    async def update_channel(
        self,
        channel_id: str,
        *,
        agent: str | None = None,
        agents: dict[str, str] | None = None,
        webhook_secret: str | None = None,
    ) -> Channel | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT * FROM channels WHERE id = $1 FOR UPDATE", channel_id)
            if row is None:
                return None
            new = merged_channel(channel_row(row), agent=agent, agents=agents, webhook_secret=webhook_secret)
            row = await conn.fetchrow(
                "UPDATE channels SET agent = $2, agents = $3, webhook_secret = $4 WHERE id = $1 RETURNING *",
                channel_id,
                new.agent,
                dumps(new.agents),
                new.webhook_secret,
            )
            return channel_row(row)

    async def add_agent_token(
        self, channel_id: str, token_hash: str, prefix: str, role: str, label: str = ""
    ) -> AgentTokenInfo:
        row = await self.pool.fetchrow(
            "INSERT INTO agent_tokens (id, channel_id, token_hash, prefix, role, label, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
            f"tok_{secrets.token_hex(6)}",
            channel_id,
            token_hash,
            prefix,
            role,
            label,
            utc_now(),
        )
        return token_row(row)

    async def channel_for_agent_token(
        self, token_hash: str, role: str
    ) -> tuple[Channel, AgentTokenInfo] | None:
        token = await self.pool.fetchrow(
            "SELECT * FROM agent_tokens WHERE token_hash = $1 AND role = $2 AND revoked_at IS NULL",
            token_hash,
            role,
        )
        if token is None:
            return None
        channel = await self.pool.fetchrow("SELECT * FROM channels WHERE id = $1", token["channel_id"])
        return (channel_row(channel), token_row(token)) if channel else None

    async def list_agent_tokens(self, channel_id: str | None = None) -> list[AgentTokenInfo]:
        rows = await self.pool.fetch(
            "SELECT * FROM agent_tokens WHERE $1::text IS NULL OR channel_id = $1 ORDER BY created_at, id",
            channel_id,
        )
        return [token_row(r) for r in rows]

    async def revoke_agent_token(self, token_id_or_prefix: str) -> AgentTokenInfo | None:
        return await self._revoke("agent_tokens", token_id_or_prefix, token_row)

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
        now = utc_now()
        row = await self.pool.fetchrow(
            "INSERT INTO conversations (id, channel_id, user_id, user_basic_info, metadata, private_metadata,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *",
            conversation_id,
            channel_id,
            user_id,
            dumps(user_basic_info),
            dumps(metadata),
            dumps(private_metadata),
            now,
        )
        return conversation_row(row)

    async def get_conversation(self, channel_id: str, conversation_id: str) -> ConversationRecord | None:
        row = await self.pool.fetchrow(LIVE, conversation_id, channel_id)
        return conversation_row(row) if row else None

    async def update_metadata(
        self, channel_id: str, conversation_id: str, public: dict[str, Any], private: dict[str, Any]
    ) -> ConversationRecord | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LIVE + " FOR UPDATE", conversation_id, channel_id)
            if row is None:
                return None
            metadata, private_metadata = merged_metadata(conversation_row(row), public, private)
            row = await conn.fetchrow(
                "UPDATE conversations SET metadata = $2, private_metadata = $3, updated_at = $4 WHERE id = $1 RETURNING *",
                conversation_id,
                dumps(metadata),
                dumps(private_metadata),
                utc_now(),
            )
            return conversation_row(row)

    async def delete_conversation(self, channel_id: str, conversation_id: str, soft: bool) -> bool:
        if soft:
            status = await self.pool.execute(
                "UPDATE conversations SET deleted_at = $3 WHERE id = $1 AND channel_id = $2 AND deleted_at IS NULL",
                conversation_id,
                channel_id,
                utc_now(),
            )
        else:
            status = await self.pool.execute(
                "DELETE FROM conversations WHERE id = $1 AND channel_id = $2", conversation_id, channel_id
            )
        return _count(status) > 0

    async def delete_user_conversations(self, channel_id: str, user_id: str, soft: bool) -> int:
        if soft:
            status = await self.pool.execute(
                "UPDATE conversations SET deleted_at = $3 WHERE channel_id = $1 AND user_id = $2 AND deleted_at IS NULL",
                channel_id,
                user_id,
                utc_now(),
            )
        else:
            status = await self.pool.execute(
                "DELETE FROM conversations WHERE channel_id = $1 AND user_id = $2", channel_id, user_id
            )
        return _count(status)

    async def list_conversations(self, query: ListQuery) -> ConversationPage:
        """Paged in the database (see the SQLite store): filter/search in SQL, COUNT, LIMIT/OFFSET."""
        if not query.channel_ids:
            return empty_page(query)
        limit, offset = page_window(query)
        conditions, extra = postgres_where(query.filter, query.search, 3)
        where = " AND ".join(
            ["channel_id = ANY($1::text[]) AND user_id = $2 AND deleted_at IS NULL", *conditions]
        )
        params = [query.channel_ids, query.user_id, *extra]
        n = len(params)
        async with self.pool.acquire() as conn:
            # Only numbered placeholders and fixed SQL are formatted in; every value is a bound parameter.
            total = await conn.fetchval(f"SELECT count(*) FROM conversations WHERE {where}", *params)  # nosec B608
            rows = await conn.fetch(
                f"SELECT * FROM conversations WHERE {where} ORDER BY updated_at DESC, id LIMIT ${n + 1} OFFSET ${n + 2}",  # nosec B608
                *params,
                limit,
                offset,
            )
        return page_of(query, [conversation_row(r) for r in rows], int(total))

    async def list_handoff(self, channel_id: str, states: list[str]) -> list[ConversationRecord]:
        if not states:
            return []
        rows = await self.pool.fetch(
            "SELECT * FROM conversations WHERE channel_id = $1 AND handoff = ANY($2::text[]) AND deleted_at IS NULL"
            " ORDER BY updated_at, id",
            channel_id,
            states,
        )
        return [conversation_row(r) for r in rows]

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
        if events and metadata is None and only_appends(handoff, human_agent, agent, require_human_agent):
            # an agent's reply: a guarded append (batched by the writer)
            # the commit's wait lends the admission slot out (limits.without_slot)
            done = await without_slot(
                self.writer.append(conversation_id, channel_id, events, guard=allowed_from)
            )
            if done is ALONE:
                async with self.pool.acquire() as conn:
                    stored, record = await self._append(
                        conn, channel_id, conversation_id, events, allowed_from
                    )
                return None if record is None else (record, stored)
            appended = _live(done, conversation_id)
            return None if appended.record is None else (appended.record, appended.stored)
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(LIVE + " FOR UPDATE", conversation_id, channel_id)
            current = conversation_row(require_live(row, conversation_id))
            if not transition_allowed(current, allowed_from, require_human_agent):
                return None
            changed = transitioned(current, handoff=handoff, human_agent=human_agent, agent=agent)
            if changed != current:  # a guard-only check (no fields, no events) writes nothing
                await conn.execute(
                    "UPDATE conversations SET handoff = $2, human_agent = $3, agent = $4, has_livechat = $5"
                    " WHERE id = $1",
                    conversation_id,
                    changed.handoff,
                    changed.human_agent,
                    changed.agent,
                    changed.has_livechat,
                )
            if metadata is not None:  # in the same transaction as the guard: a refused change writes nothing
                public, private = merged_metadata(changed, *metadata)
                changed = conversation_row(
                    await conn.fetchrow(
                        "UPDATE conversations SET metadata = $2, private_metadata = $3, updated_at = $4"
                        " WHERE id = $1 RETURNING *",
                        conversation_id,
                        dumps(public),
                        dumps(private),
                        utc_now(),
                    )
                )
            if not events:
                return changed, []
            stored, updated = await self._append(conn, channel_id, conversation_id, events)
            assert updated is not None
            return updated, stored

    # the event log

    @staticmethod
    async def _insert(
        conn: Conn, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> list[StoredEvent]:
        return (await PostgresStore._append(conn, channel_id, conversation_id, events))[0]

    @staticmethod
    async def _append(
        conn: Conn,
        channel_id: str,
        conversation_id: str,
        events: list[NewEvent],
        allowed_from: frozenset[str] | None = None,
    ) -> tuple[list[StoredEvent], ConversationRecord | None]:
        """:data:`APPEND` (one round trip): the stored events and the conversation as they left it; with
        ``allowed_from``, ``([], None)`` when the conversation is not in one of those states."""
        now = utc_now()
        args = append_args(conversation_id, channel_id, events, now)
        if allowed_from is None:
            rows = await conn.fetch(APPEND_EVENTS, *args)
        else:
            rows = await conn.fetch(APPEND_GUARDED, *args, list(allowed_from))
        if not rows:
            if allowed_from is not None and await conn.fetchval(
                LIVE.replace("*", "1", 1), conversation_id, channel_id
            ):
                return [], None  # there, but in another state
            raise ConversationNotFound(conversation_id)
        record = json_conversation(rows[0]["conversation"])
        return stored_events(conversation_id, record.last_seq - len(events) + 1, events, now), record

    async def append_events(
        self, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> list[StoredEvent]:
        if not events:
            return []
        done = await without_slot(self.writer.append(conversation_id, channel_id, events))
        if done is ALONE:
            async with self.pool.acquire() as conn:  # autocommitted: one statement
                return await self._insert(conn, channel_id, conversation_id, events)
        return _live(done, conversation_id).stored

    async def append_user_turn(
        self, channel_id: str, conversation_id: str, event: NewEvent
    ) -> tuple[StoredEvent, bool, ConversationRecord | None]:
        once = dumps(event.payload) if deduplicates(event) else None
        if (
            once is None or "\\u0000" not in once
        ):  # jsonb (the comparison) refuses NUL: the long way for those
            done = await without_slot(self.writer.append(conversation_id, channel_id, [event], once=once))
            if done is not ALONE:
                appended = _live(done, conversation_id)
                if appended.earlier is not None:
                    return appended.earlier, False, None
                return appended.stored[0], True, appended.record
        async with self.pool.acquire() as conn:  # on its own: what the writer handed back, or a NUL
            if once is None:
                (stored,), record = await self._append(conn, channel_id, conversation_id, [event])
                return stored, True, record
            if "\\u0000" not in once:
                for _ in range(DEDUPE_ATTEMPTS):
                    found = await self._append_once(conn, channel_id, conversation_id, event, once)
                    if found is not None:
                        return found
            return await self._append_once_locked(conn, channel_id, conversation_id, event)

    @staticmethod
    async def _append_once(
        conn: Conn, channel_id: str, conversation_id: str, event: NewEvent, payload: str
    ) -> tuple[StoredEvent, bool, ConversationRecord | None] | None:
        """:data:`APPEND_ONCE`: the stored event (or the earlier copy), or None when another append got in
        between the statement's snapshot and the row lock (the caller tries again)."""
        now = utc_now()
        row = await conn.fetchrow(
            APPEND_ONCE,
            conversation_id,
            channel_id,
            now,
            event.event_type,
            event.sender,
            event.message_id,
            event.client_msg_id,
            payload,
        )
        require_live(row["live"] or None, conversation_id)
        if row["earlier"] is not None:
            return event_row(loads(row["earlier"])), False, None
        if row["conversation"] is None:
            return None
        record = json_conversation(row["conversation"])
        (stored,) = stored_events(conversation_id, record.last_seq, [event], now)
        return stored, True, record

    async def _append_once_locked(
        self, conn: Conn, channel_id: str, conversation_id: str, event: NewEvent
    ) -> tuple[StoredEvent, bool, ConversationRecord | None]:
        """The same in a transaction (5 round trips): the row lock first, then the look for an earlier copy (a
        statement of its own, so it sees a copy committed by whoever held the lock before us), then the
        append; :func:`~.rules.retry_of` decides (:data:`APPEND_ONCE` is that rule in SQL)."""
        async with conn.transaction():
            require_live(
                await conn.fetchval(LIVE.replace("*", "1", 1) + " FOR UPDATE", conversation_id, channel_id),
                conversation_id,
            )
            rows = await conn.fetch(
                "SELECT * FROM events WHERE conversation_id = $1 AND client_msg_id = $2 ORDER BY seq",
                conversation_id,
                event.client_msg_id,
            )
            previous = retry_of(event, map(event_row, rows))
            if previous is not None:
                return previous, False, None
            (stored,), record = await self._append(conn, channel_id, conversation_id, [event])
            return stored, True, record

    async def events_after(
        self, channel_id: str, conversation_id: str, after_seq: int, limit: int = 1000
    ) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            f"SELECT * FROM events WHERE conversation_id = $1 AND {OWNED} AND seq > $3 ORDER BY seq LIMIT $4",  # nosec B608
            conversation_id,
            channel_id,
            after_seq,
            limit,
        )
        return [event_row(r) for r in rows]

    async def messages(self, channel_id: str, conversation_id: str) -> list[StoredEvent]:
        rows = await self.pool.fetch(
            f"SELECT * FROM events WHERE conversation_id = $1 AND {OWNED} AND sender IS NOT NULL ORDER BY seq",  # nosec B608
            conversation_id,
            channel_id,
        )
        return [event_row(r) for r in rows]

    async def edit_message(
        self,
        channel_id: str,
        conversation_id: str,
        message_id: str,
        content: Any,
        *,
        senders: frozenset[str] | None = None,
    ) -> StoredEvent | None:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"SELECT * FROM events WHERE conversation_id = $1 AND {OWNED} AND message_id = $3"  # nosec B608
                " AND sender IS NOT NULL FOR UPDATE",
                conversation_id,
                channel_id,
                message_id,
            )
            if row is None:
                return None
            check_editable(row["sender"], senders)
            payload = edited_payload(event_row(row).payload, content)
            row = await conn.fetchrow(
                "UPDATE events SET payload = $3, edited_at = $4 WHERE conversation_id = $1 AND seq = $2 RETURNING *",
                conversation_id,
                row["seq"],
                dumps(payload),
                utc_now(),
            )
            return event_row(row)


def _live(done: Appended, conversation_id: str) -> Appended:
    """The writer's outcome of a live conversation's append, else :class:`ConversationNotFound`."""
    return require_live(done if done.live else None, conversation_id)


def _count(status: str) -> int:
    """Rows affected, from a command tag such as ``UPDATE 3``."""
    return int(status.rsplit(" ", 1)[-1])
