"""PostgreSQL group commit: every append queued while the previous statement ran goes in one statement.

The writer has :data:`LANES` connections of its own (no pool acquire/release per append); a free lane
takes everything queued. A batch is one autocommitted statement (:data:`BATCH_APPEND`), so it is atomic:
either every append in it is committed or none is, and a future is resolved only once the statement
returned — acknowledged means committed, whatever the batch size. A batch's futures are resolved in the
order its appends were queued.

The rules that keep a batch from changing what an append means:

- **one append per conversation in flight**: a second append to a conversation waits for the statement
  that writes the first (in the next batch, on any lane), so its ``seq`` order is the queue order, and a
  repeated ``client_msg_id`` finds the first copy committed;
- **the batch never waits for a lock**: a conversation row locked by another transaction is skipped
  (``SKIP LOCKED``), and so is a conversation changed between the statement's snapshot and its lock when
  the append deduplicates; those appends come back as :data:`ALONE` and the store runs them on its pool,
  one statement (or transaction) each, waiting for the lock as before;
- **a failing batch fails nobody by accident**: a statement refused by the server for another reason than
  an outage (a bad payload, a deadlock) committed nothing, so every append in it comes back as
  :data:`ALONE` and fails (or not) on its own; an outage (connection lost, timeout, disk full) fails the
  whole batch with the error (503/507): none of it was acknowledged;
- **a wait is bounded** as the pool's is: an append still queued ``acquire_timeout`` seconds after it came
  fails with ``TimeoutError`` (503) when the statement ahead of it is stuck.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from .base import ConversationRecord, NewEvent, StoredEvent
from .clock import utc_now
from .faults import classify
from .rows import conversation_row, dumps, event_row, loads

log = logging.getLogger("captivate_chat_api.server.store")

Conn = Any  # asyncpg.Connection (untyped library)
MAX_BATCH = 500
"""Appends per statement at most (bounds a statement's duration under a burst)."""
LANES = 4
"""Statements in flight at once (connections of the writer): commits overlap, as a pool's do, when only a
few appends are queued at a time (each waits for its WAL flush)."""

CONVERSATION = {
    "id": "text",
    "channel_id": "text",
    "user_id": "text",
    "user_basic_info": "text",
    "metadata": "text",
    "private_metadata": "text",
    "last_seq": "bigint",
    "created_at": "text",
    "updated_at": "text",
    "deleted_at": "text",
    "handoff": "text",
    "human_agent": "text",
    "agent": "text",
    "has_livechat": "boolean",
}
"""A conversations row's columns and their types (the result's third part)."""
BATCH_APPEND = (
    # $1..$8: one row per append (its events as a JSON array of [event_type, sender, message_id,
    # client_msg_id, payload]); $9: now. No part joins two of these CTEs: each row of one is found by an
    # index scan or made from one row of the one before, so a batch costs what its appends cost, not their
    # square (the planner estimates one row for each CTE and would nest loops over them).
    # (the lookups are correlated subqueries, so that each is an index scan whatever the planner guesses)
    # Only the column names of CONVERSATION are formatted in; every value is a bound parameter.
    "WITH item AS (SELECT i.*, coalesce((SELECT TRUE FROM conversations c WHERE c.id = i.cid"  # nosec B608
    " AND c.channel_id = i.ch AND c.deleted_at IS NULL), FALSE) AS live FROM unnest($1::int[], $2::text[],"
    " $3::text[], $4::int[], $5::text[], $6::text[], $7::text[], $8::text[])"
    " AS i(item, cid, ch, n, guard, once_id, once_payload, events)),"
    # the rows this statement writes, locked, in their newest committed version; one locked by another: skipped
    " locked AS (SELECT i.*, c.locked_seq, c.handoff FROM item i, LATERAL (SELECT c.last_seq AS locked_seq,"
    " c.handoff FROM conversations c WHERE c.id = i.cid AND c.channel_id = i.ch AND c.deleted_at IS NULL"
    " FOR UPDATE SKIP LOCKED) c),"
    # what the statement's snapshot saw: the last seq, and a stored copy of a deduplicated message
    " decided AS (SELECT l.*, (SELECT c.last_seq FROM conversations c WHERE c.id = l.cid) AS seen_seq,"
    " CASE WHEN l.once_id IS NOT NULL THEN (SELECT row_to_json(e)::text FROM events e"
    " WHERE e.conversation_id = l.cid AND e.client_msg_id = l.once_id AND e.sender = 'user'"
    " AND e.payload::jsonb = l.once_payload::jsonb ORDER BY e.seq LIMIT 1) END AS earlier FROM locked l),"
    # an agent's reply only in one of its hand-off states; a deduplicated message only when no copy is there
    # and nobody appended between the snapshot and the lock (then the snapshot's look is the whole truth)
    " bump AS (UPDATE conversations c SET last_seq = c.last_seq + d.n, updated_at = $9 FROM decided d"
    " WHERE c.id = d.cid AND (d.guard IS NULL OR d.handoff = ANY(string_to_array(d.guard, ',')))"
    " AND (d.once_id IS NULL OR (d.earlier IS NULL AND d.seen_seq = d.locked_seq))"
    f" RETURNING d.item, d.n, d.events, {', '.join('c.' + col for col in CONVERSATION)}),"
    " added AS (INSERT INTO events (conversation_id, seq, event_type, sender, message_id, client_msg_id,"
    " payload, created_at) SELECT b.id, b.last_seq - b.n + e.k, e.v->>0, e.v->>1, e.v->>2, e.v->>3,"
    " (e.v->4)::text, $9"
    " FROM bump b, json_array_elements(b.events::json) WITH ORDINALITY AS e(v, k))"
    # three parts, told apart by ``part``: every append (live?), every locked one (what was decided), every
    # written one (the conversation as it left it)
    " SELECT 0 AS part, item, live, NULL::text AS handoff_now, NULL::text AS earlier,"
    f" {', '.join(f'NULL::{kind} AS {col}' for col, kind in CONVERSATION.items())} FROM item"
    " UNION ALL SELECT 1, item, TRUE, handoff, earlier,"
    f" {', '.join(f'NULL::{kind}' for kind in CONVERSATION.values())} FROM decided"
    f" UNION ALL SELECT 2, item, TRUE, NULL, NULL, {', '.join(CONVERSATION)} FROM bump"
)


@dataclass(frozen=True, slots=True)
class Appended:
    """An append's outcome. ``live`` False: the conversation is unknown, deleted or another channel's.
    ``record`` None (and live): a guarded append refused by the hand-off state, or (with ``earlier``) a
    retry of a stored user message."""

    live: bool
    record: ConversationRecord | None = None
    stored: list[StoredEvent] = field(default_factory=list)
    earlier: StoredEvent | None = None


ALONE: Any = object()
"""The outcome that sends an append back to its caller, to be run on its own (see the module's rules)."""


@dataclass(slots=True, eq=False)
class Append:
    conversation_id: str
    channel_id: str
    events: list[NewEvent]
    future: asyncio.Future[Any]
    queued: float
    guard: str | None = None
    """The hand-off states it may be appended in, comma-separated (an agent's reply); None: any."""
    once: str | None = None
    """A user message's payload JSON: appended unless a user message with its ``client_msg_id`` and this
    payload is stored (:func:`.rules.retry_of`, in SQL)."""


class _Lane:
    """One connection of the writer, and the batch it is writing."""

    __slots__ = ("batch", "conn")

    def __init__(self) -> None:
        self.conn: Conn = None
        self.batch: list[Append] = []


class AppendWriter:
    """The store's appends, batched over ``lanes`` connections: a free lane takes everything queued (but
    what a busy lane is writing to the same conversation), so a lone append is written at once, as on a
    pool, and under load the batches grow instead of the statements."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[Conn]],
        *,
        statement_timeout: float,
        acquire_timeout: float,
        lanes: int = LANES,
    ) -> None:
        self._connect = connect
        self._timeout = statement_timeout
        self._acquire_timeout = acquire_timeout
        self._lanes = [_Lane() for _ in range(lanes)]
        self._queue: list[Append] = []
        self._writing: set[str] = set()
        """Conversations a lane is writing now: their next appends wait for that statement."""
        self._idle: list[asyncio.Future[None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.batches = 0
        """Statements run (for tests and benchmarks: appends / batches is the batch size)."""
        self.appends = 0
        self.alone = 0
        """Appends handed back to run on their own (a row locked by another transaction, a refused batch)."""

    async def start(self) -> None:
        """Connect the lanes (one that loses its connection later reconnects when next needed) and start them."""
        conns = await asyncio.gather(*(self._connect() for _ in self._lanes), return_exceptions=True)
        for lane, conn in zip(self._lanes, conns, strict=True):
            if isinstance(conn, BaseException):
                for other in self._lanes:
                    _drop(other)
                raise conn
            lane.conn = conn
        self._tasks = [
            asyncio.create_task(self._run(lane), name=f"postgres-writer-{n}")
            for n, lane in enumerate(self._lanes)
        ]

    def append(
        self,
        conversation_id: str,
        channel_id: str,
        events: list[NewEvent],
        *,
        guard: frozenset[str] | None = None,
        once: str | None = None,
    ) -> asyncio.Future[Any]:
        """Queue an append; the future resolves to :class:`Appended` once committed (or to :data:`ALONE`)."""
        if not self._tasks or self._closing:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append(
            Append(
                conversation_id,
                channel_id,
                events,
                future,
                loop.time(),
                None if guard is None else ",".join(sorted(guard)),
                once,
            )
        )
        self._wake_one()
        return future

    def _wake_one(self) -> None:
        while self._idle:
            idle = self._idle.pop()
            if not idle.done():
                idle.set_result(None)
                return

    def _wake_all(self) -> None:
        idle, self._idle = self._idle, []
        for future in idle:
            if not future.done():
                future.set_result(None)

    async def close(self, timeout: float) -> None:
        """Write what is queued (at most ``timeout`` s more); then fail what is left (503)."""
        tasks, self._tasks = self._tasks, []
        self._closing = True
        self._wake_all()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        closing = ConnectionError("the store is closing")
        for item in (*(i for lane in self._lanes for i in lane.batch), *self._queue):
            _fail(item, closing)
        self._queue = []
        for lane in self._lanes:
            lane.batch = []
            _drop(lane)

    # the lanes

    async def _run(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = self._take()
            if not batch:
                if self._closing and not self._queue:
                    return
                idle = loop.create_future()
                self._idle.append(idle)
                await idle
                continue
            lane.batch = batch
            expiry = loop.call_later(self._acquire_timeout, self._expire, loop)
            try:
                await self._commit(lane, batch)
            finally:
                expiry.cancel()
                lane.batch = []
                self._writing.difference_update(item.conversation_id for item in batch)
            if self._closing:
                self._wake_all()  # the lanes with nothing left to write end
            elif self._queue:
                self._wake_one()  # what waited for these conversations may go now, on another lane too

    def _take(self) -> list[Append]:
        """The next batch: the oldest append of each conversation (in queue order) that no lane is writing
        to; the rest stays queued, in order."""
        batch: list[Append] = []
        later: list[Append] = []
        writing = self._writing
        for item in self._queue:
            if item.future.done():
                continue  # its caller gave up (cancelled) before it was written: nothing is written
            if item.conversation_id in writing or len(batch) >= MAX_BATCH:
                later.append(item)
            else:
                writing.add(item.conversation_id)
                batch.append(item)
        self._queue = later
        return batch

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """A statement in flight is stuck: what has waited in line for ``acquire_timeout`` fails (503)."""
        limit = loop.time() - self._acquire_timeout
        waited = [item for item in self._queue if item.queued <= limit]
        if waited:
            self._queue = [item for item in self._queue if item.queued > limit]
            error = TimeoutError("waited too long for the PostgreSQL writer")
            for item in waited:
                _fail(item, error)

    async def _commit(self, lane: _Lane, batch: list[Append]) -> None:
        now = utc_now()
        try:
            args = batch_args(batch, now)
        except Exception:  # noqa: BLE001 -- a payload that cannot be sent as JSON fails alone, on the pool
            self.alone += len(batch)
            for item in batch:
                _resolve(item, ALONE)
            return
        try:
            if lane.conn is None or lane.conn.is_closed():
                lane.conn = await self._connect()
            rows = await lane.conn.fetch(BATCH_APPEND, *args, timeout=self._timeout)
        except asyncpg.PostgresError as exc:
            if classify(exc) is None:
                # refused by the server, so nothing of it was committed: each append on its own
                self.alone += len(batch)
                for item in batch:
                    _resolve(item, ALONE)
            else:
                _fail_all(batch, exc)
            return
        except asyncpg.DataError:  # an argument the driver could not encode: nothing was sent
            self.alone += len(batch)
            for item in batch:
                _resolve(item, ALONE)
            return
        except Exception as exc:  # noqa: BLE001 -- the link is lost or timed out: whether it committed is unknown
            _drop(lane)
            _fail_all(batch, exc)
            return
        self.batches += 1
        self.appends += len(batch)
        try:
            done = outcomes(batch, rows, now)
        except Exception as exc:  # a bug: these appends may be committed, so they must not be run again
            log.exception("a batch's outcomes could not be read")
            _fail_all(batch, exc)
            return
        for item, value in zip(batch, done, strict=True):
            if value is ALONE:
                self.alone += 1
            _resolve(item, value)


def _drop(lane: _Lane) -> None:
    conn, lane.conn = lane.conn, None
    if conn is not None and not conn.is_closed():
        conn.terminate()


def batch_args(batch: list[Append], now: str) -> list[Any]:
    columns: list[list[Any]] = [[], [], [], [], [], [], [], []]
    for number, item in enumerate(batch, 1):
        events = ",".join(
            # the payload's own JSON text inside the array: json (not jsonb) ``->`` hands it back as written
            dumps([e.event_type, e.sender, e.message_id, e.client_msg_id])[:-1]
            + ","
            + (item.once if item.once is not None else dumps(e.payload))
            + "]"
            for e in item.events
        )
        for column, value in zip(
            columns,
            (
                number,
                item.conversation_id,
                item.channel_id,
                len(item.events),
                item.guard,
                item.events[0].client_msg_id if item.once is not None else None,
                item.once,
                "[" + events + "]",
            ),
            strict=True,
        ):
            column.append(value)
    return [*columns, now]


def outcomes(batch: list[Append], rows: list[Any], now: str) -> list[Any]:
    """Each append's :class:`Appended` (or :data:`ALONE`), from the batch's rows (see :data:`BATCH_APPEND`)."""
    live: dict[int, Any] = {}
    decided: dict[int, Any] = {}
    written: dict[int, Any] = {}
    for row in rows:
        (live, decided, written)[row["part"]][row["item"]] = row
    done: list[Any] = []
    for number, item in enumerate(batch, 1):
        row = written.get(number)
        if row is not None:
            record = conversation_row(row)
            first = record.last_seq - len(item.events) + 1
            done.append(Appended(True, record, stored_events(item.conversation_id, first, item.events, now)))
            continue
        if not live[number]["live"]:
            done.append(Appended(False))  # (a copy in another channel's conversation is no retry either)
            continue
        row = decided.get(number)
        if row is None:
            done.append(ALONE)  # another transaction holds the row (or it was deleted meanwhile)
        elif row["earlier"] is not None:
            done.append(Appended(True, earlier=event_row(loads(row["earlier"]))))
        elif item.guard is not None and row["handoff_now"] not in item.guard.split(","):
            done.append(Appended(True))
        else:
            done.append(ALONE)  # a deduplicated message whose conversation changed after the snapshot
    return done


def stored_events(conversation_id: str, first: int, events: list[NewEvent], now: str) -> list[StoredEvent]:
    return [
        StoredEvent(
            conversation_id=conversation_id,
            seq=first + i,
            event_type=e.event_type,
            payload=e.payload,
            created_at=now,
            sender=e.sender,
            message_id=e.message_id,
            client_msg_id=e.client_msg_id,
        )
        for i, e in enumerate(events)
    ]


def _resolve(item: Append, value: Any) -> None:
    if not item.future.done():
        item.future.set_result(value)


def _fail(item: Append, exc: BaseException) -> None:
    if not item.future.done():
        item.future.set_exception(exc)


def _fail_all(batch: list[Append], exc: BaseException) -> None:
    for item in batch:
        _fail(item, exc)
