"""A conversation's timeline: append to the durable log, then fan out, in commit order.

No lock is held across the store call: the store resolves writes in the order it committed them (SQLite:
one writer thread, group commit), and the coroutine that awaited a write fans its events out as soon as it
wakes up, with no await in between, so sockets get a conversation's events in ``seq`` order. Where wake-ups
can come out of order (PostgreSQL's connection pool), the hub finds the gap and fills it from the store.

A ``subscribe`` binds the socket first and holds its live events back while it replays from the store,
then lets them follow: nothing committed meanwhile is missed, nothing is sent twice.
"""

from __future__ import annotations

import logging
import os
import random
from typing import Any, Protocol

from ..errors import ConversationNotFound
from .connection import Connection
from .hub import Hub
from .locks import KeyedLocks
from .metrics import Metrics
from .store import ConversationRecord, NewEvent, Store, StoredEvent
from .store.base import new_event

log = logging.getLogger("captivate_chat_api.server.timeline")
REPLAY_BATCH = 500


_ids = random.Random()  # nosec B311 -- an id, not a secret (every read of a message is authorized)
os.register_at_fork(after_in_child=_ids.seed)  # a forked process never repeats its parent's ids


def new_message_id() -> str:
    """``msg_`` + 32 random hex digits (as ``uuid4().hex``). From a generator seeded by ``os.urandom``, not
    ``os.urandom`` itself: its system call lets go of the GIL, and under load getting it back from the
    writer thread cost the event loop more than the rest of the id."""
    return f"msg_{_ids.getrandbits(128):032x}"


class Subscribable(Protocol):
    """Another process's socket (:class:`..broker.relay.RemoteSocket`): asked to subscribe over there."""

    channel_id: str

    @property
    def is_remote(self) -> bool: ...

    def subscribe(self, conversation_id: str, after_seq: int | None) -> None: ...


class Timeline:
    def __init__(self, store: Store, hub: Hub, *, metrics: Metrics | None = None) -> None:
        self.store = store
        self.hub = hub
        self.lock = KeyedLocks()
        """For the rare changes that must not interleave with each other (a deletion); appends do not take it."""
        self.metrics = metrics or Metrics()

    def publish(self, events: list[StoredEvent]) -> None:
        """Fan out just-committed events (counted here: once, on the node that stored them)."""
        debug = log.isEnabledFor(logging.DEBUG)
        for event in events:
            self.metrics.stored(event)
            if debug:
                log.debug(
                    "stored %s seq %d",
                    event.event_type,
                    event.seq,
                    extra={
                        "conversation_id": event.conversation_id,
                        "event_type": event.event_type,
                        "seq": event.seq,
                    },
                )
            self.hub.publish(event)

    async def append(
        self, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> list[StoredEvent]:
        """Commit ``events`` and deliver them to the bound sockets. ConversationNotFound if the conversation is gone."""
        if not events:
            return []
        stored = await self.store.append_events(channel_id, conversation_id, events)
        self.publish(stored)
        return stored

    async def append_user_turn(
        self, channel_id: str, conversation_id: str, content: Any, client_msg_id: str | None
    ) -> tuple[StoredEvent, bool, ConversationRecord | None]:
        """Store a user message once per ``client_msg_id``: returns ``(event, created, conversation)``, the
        conversation as it is after the append when the store read it in the same step (else None).

        A repeat with the same id *and* the same content is a retry and gets the first result. The npm
        client's ids (``unique-message-id-<ms>``) can collide between different messages, so a repeat
        with other content is a new message, not a silent drop.
        """
        event = new_event(
            event_type="user_message",
            payload={"content": content},
            sender="user",
            message_id=new_message_id(),
            client_msg_id=client_msg_id,
        )
        stored, created, record = await self.store.append_user_turn(channel_id, conversation_id, event)
        if created:
            self.publish([stored])
        return stored, created, record

    async def transition(
        self, channel_id: str, conversation_id: str, **change: Any
    ) -> tuple[ConversationRecord, list[StoredEvent]] | None:
        """A guarded state change with its events (see :meth:`Store.transition`), then fan-out."""
        result = await self.store.transition(channel_id, conversation_id, **change)
        if result is not None:
            self.publish(result[1])
        return result

    async def append_if(
        self, channel_id: str, conversation_id: str, events: list[NewEvent], *, allowed_from: frozenset[str]
    ) -> list[StoredEvent] | None:
        """:meth:`append` only while the hand-off state is one of ``allowed_from`` (see
        :meth:`Store.append_if`): None, nothing stored, in another state."""
        stored = await self.store.append_if(channel_id, conversation_id, events, allowed_from=allowed_from)
        if stored is not None:
            self.publish(stored)
        return stored

    async def subscribe(
        self, connection: Connection | Subscribable, conversation_id: str, after_seq: int | None
    ) -> int:
        """Replay every event after ``after_seq`` to ``connection`` (none when None), then bind it for
        live events. Returns the last ``seq`` of the conversation (at least the last one this socket got). A socket of another process is asked,
        through the broker, to do the same there."""
        channel_id = connection.channel_id
        record = await self.store.get_conversation(channel_id, conversation_id)
        if record is None:
            raise ConversationNotFound(conversation_id)
        if connection.is_remote:
            connection.subscribe(conversation_id, after_seq)  # type: ignore[union-attr]
            return record.last_seq
        assert isinstance(connection, Connection)
        # Clamped: an after_seq ahead of the log (a restored database) must not leave the socket deaf
        # to the events stored from now on; the reply tells the client it was not recovered.
        cursor = record.last_seq if after_seq is None else min(after_seq, record.last_seq)
        connection.begin_replay(conversation_id, cursor)
        self.hub.bind(conversation_id, connection)
        try:
            while True:  # to the end of the log as it is now: what commits later is held, then follows
                batch = await self.store.events_after(channel_id, conversation_id, cursor, limit=REPLAY_BATCH)
                for event in batch:  # at the reader's pace
                    await connection.replay(conversation_id, event.seq, self.hub.encode(event))
                if len(batch) < REPLAY_BATCH:
                    break
                cursor = batch[-1].seq
        finally:
            connection.end_replay(conversation_id)
        # what the socket has now, replay and held events included (the reply follows them)
        return max(record.last_seq, connection.position(conversation_id) or 0)
