"""A conversation's timeline: append to the durable log, then fan out, one conversation at a time.

Appends and replays of one conversation hold the same lock, so sockets see events in ``seq`` order and
a subscribing socket cannot miss an event that commits while its replay is being read.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from .hub import Connection, Hub, RemoteSocket
from .locks import KeyedLocks
from .metrics import Metrics
from .store import ConversationRecord, NewEvent, Store, StoredEvent

log = logging.getLogger("captivate_chat_api.server.timeline")


def new_message_id() -> str:
    return f"msg_{uuid.uuid4().hex}"


class Timeline:
    def __init__(self, store: Store, hub: Hub, *, metrics: Metrics | None = None) -> None:
        self.store = store
        self.hub = hub
        self.lock = KeyedLocks()
        self.metrics = metrics or Metrics()

    def _publish(self, event: StoredEvent) -> None:
        """Fan out a just-committed event (counted here: once, on the node that stored it)."""
        self.metrics.stored(event)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "stored %s seq %d", event.event_type, event.seq,
                extra={"conversation_id": event.conversation_id, "event_type": event.event_type, "seq": event.seq},
            )
        self.hub.publish(event)

    async def append(self, channel_id: str, conversation_id: str, events: list[NewEvent]) -> list[StoredEvent]:
        """Commit ``events`` and deliver them to the bound sockets. Raises LookupError if the conversation is gone."""
        if not events:
            return []
        async with self.lock(conversation_id):
            stored = await self.store.append_events(channel_id, conversation_id, events)
            for event in stored:
                self._publish(event)
            return stored

    async def append_user_message(
        self, channel_id: str, conversation_id: str, content: Any, client_msg_id: str | None
    ) -> tuple[StoredEvent, bool]:
        """Store a user message once per ``client_msg_id``: returns ``(event, created)``.

        A repeat with the same id *and* the same content is a retry and gets the first result. The npm
        client's ids (``unique-message-id-<ms>``) can collide between different messages, so a repeat
        with other content is a new message, not a silent drop.
        """
        event = NewEvent(
            event_type="user_message",
            payload={"content": content},
            sender="user",
            message_id=new_message_id(),
            client_msg_id=client_msg_id,
        )
        async with self.lock(conversation_id):
            stored, created = await self.store.append_user_message(channel_id, conversation_id, event)
            if created:
                self._publish(stored)
            return stored, created

    async def transition(
        self, channel_id: str, conversation_id: str, **change: Any
    ) -> tuple[ConversationRecord, list[StoredEvent]] | None:
        """A guarded state change with its events (see :meth:`Store.transition`), then fan-out."""
        async with self.lock(conversation_id):
            result = await self.store.transition(channel_id, conversation_id, **change)
            if result is not None:
                for event in result[1]:
                    self._publish(event)
            return result

    async def subscribe(self, connection: Connection | RemoteSocket, conversation_id: str, after_seq: int | None) -> int:
        """Replay every event after ``after_seq`` to ``connection`` (none when None), then bind it for
        live events. Returns the last ``seq`` of the conversation. A socket of another process is asked,
        through the broker, to do the same there."""
        channel_id = connection.channel_id if isinstance(connection, RemoteSocket) else connection.channel.id
        if isinstance(connection, RemoteSocket):
            record = await self.store.get_conversation(channel_id, conversation_id)
            if record is None:
                raise LookupError(conversation_id)
            self.hub._share({"t": "subscribe", "sid": connection.socket_id, "ch": channel_id,
                             "cid": conversation_id, "after": after_seq})
            return record.last_seq
        async with self.lock(conversation_id):
            record = await self.store.get_conversation(channel_id, conversation_id)
            if record is None:
                raise LookupError(conversation_id)
            # Clamped: an after_seq ahead of the log (a restored database) must not leave the socket deaf
            # to the events stored from now on; the reply tells the client it was not recovered.
            cursor = record.last_seq if after_seq is None else min(after_seq, record.last_seq)
            connection.rewind(conversation_id, cursor)
            while cursor < record.last_seq:
                batch = await self.store.events_after(conversation_id, cursor, limit=500)
                if not batch:
                    break
                for event in batch:  # at the reader's pace: writers of this conversation wait meanwhile
                    await connection.replay(conversation_id, event.seq, self.hub.encode(event))
                cursor = batch[-1].seq
            self.hub.bind(conversation_id, connection)
            return record.last_seq
