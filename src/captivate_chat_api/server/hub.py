"""The hub: this process's live sockets, which conversations each is bound to (PROTOCOL.md section 3),
and fan-out to them. It knows sockets only: no store, no broker (the relay, :mod:`.broker.relay`, tells
other processes what happened here and hands their news to :meth:`Hub.publish_frame` & co).

A stored event's frame is encoded once and written to each bound socket, in commit order. A socket that
finds a gap in a conversation's ``seq`` (two writers' commits woke up out of order, or another process's
event overtook one) asks ``on_gap`` to fill it from the store before going on.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

from .connection import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY_VIOLATION,
    CLOSE_TRY_AGAIN_LATER,
    Connection,
    WebSocketLike,
)
from .fastjson import frame
from .store import StoredEvent

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_TRY_AGAIN_LATER",
    "Connection",
    "Hub",
    "Outlet",
    "WebSocketLike",
]


class Outlet(Protocol):
    """Where the hub tells the rest of the world what it fanned out here (the relay; nothing by default)."""

    def event(self, conversation_id: str, seq: int, frame: str) -> None: ...

    def broadcast(self, conversation_id: str, frame: str) -> None: ...

    def unbind(self, conversation_id: str) -> None: ...

    def notify(self, channel_id: str, frame: str) -> None: ...

    def watch(self, conversation_id: str) -> None:
        """The first socket of this process was bound to the conversation."""

    def unwatch(self, conversation_id: str) -> None:
        """The last one was unbound (or closed)."""


class _Nowhere:
    def event(self, conversation_id: str, seq: int, frame: str) -> None:
        pass

    def broadcast(self, conversation_id: str, frame: str) -> None:
        pass

    def unbind(self, conversation_id: str) -> None:
        pass

    def notify(self, channel_id: str, frame: str) -> None:
        pass

    def watch(self, conversation_id: str) -> None:
        pass

    def unwatch(self, conversation_id: str) -> None:
        pass


class Hub:
    def __init__(self, *, max_outbound_frame_bytes: int, message_link_base: Callable[[], str]) -> None:
        self._connections: dict[str, Connection] = {}
        self._bindings: dict[str, set[Connection]] = {}
        self._watchers: dict[str, set[Connection]] = defaultdict(set)
        self._max_outbound = max_outbound_frame_bytes
        self._link_base = message_link_base
        self.outlet: Outlet = _Nowhere()
        self.on_gap: Callable[[Connection, str], None] | None = None
        """Called when a socket would skip a ``seq``: fill it from the store (set by the relay)."""

    def __len__(self) -> int:
        return len(self._connections)

    def connections(self) -> list[Connection]:
        return list(self._connections.values())

    def count_for(self, channel_id: str, role: str = "client") -> int:
        return sum(1 for c in self._connections.values() if c.channel.id == channel_id and c.role == role)

    def add(self, connection: Connection) -> None:
        self._connections[connection.socket_id] = connection

    def watch_channel(self, connection: Connection) -> None:
        """A human agent's socket: it gets the channel's hand-off notifications."""
        self._watchers[connection.channel.id].add(connection)

    def notify_channel(self, channel_id: str, text: str, *, share: bool = True) -> None:
        for connection in tuple(self._watchers.get(channel_id, ())):
            connection.send(text)
        if share:
            self.outlet.notify(channel_id, text)

    def remove(self, connection: Connection) -> None:
        self._connections.pop(connection.socket_id, None)
        watchers = self._watchers.get(connection.channel.id)
        if watchers is not None:
            watchers.discard(connection)
            if not watchers:
                del self._watchers[connection.channel.id]
        for conversation_id in connection.conversations:
            bound = self._bindings.get(conversation_id)
            if bound is not None:
                bound.discard(connection)
                if not bound:
                    del self._bindings[conversation_id]
                    self.outlet.unwatch(conversation_id)
        connection.conversations.clear()

    def has(self, socket_id: str) -> bool:
        return socket_id in self._connections

    def find(self, socket_id: str | None, channel_id: str) -> Connection | None:
        """The live socket with that id, only if it belongs to the same channel (else as if unknown)."""
        if not socket_id:
            return None
        connection = self._connections.get(socket_id)
        if connection is None or connection.channel.id != channel_id or not connection.accepting:
            return None
        return connection

    def find_client(self, socket_id: str | None, channel_id: str) -> Connection | None:
        """Like :meth:`find`, for client events: a human agent's socket is never bound by a client."""
        connection = self.find(socket_id, channel_id)
        return connection if connection is not None and connection.role == "client" else None

    def bind(self, conversation_id: str, connection: Connection, seq: int | None = None) -> None:
        """Bind ``connection`` to the conversation's live events; ``seq``, the conversation's last ``seq`` as
        the caller knows it, is where the socket starts (unless it had events of it already): an event
        after a gap is then filled from the store first, and what other processes published before this
        process heard the conversation is filled too (see :mod:`.broker.relay`)."""
        if conversation_id in connection.conversations:
            return
        if seq is not None:
            connection.start_at(conversation_id, seq)
        connection.conversations.add(conversation_id)
        bound = self._bindings.get(conversation_id)
        if bound is None:
            self._bindings[conversation_id] = {connection}
            self.outlet.watch(conversation_id)
        else:
            bound.add(connection)

    def bound(self, conversation_id: str) -> tuple[Connection, ...]:
        return tuple(self._bindings.get(conversation_id, ()))

    def broadcast(self, conversation_id: str, text: str, *, share: bool = True) -> None:
        """Send a frame that is not part of the stored log (it has no ``seq``)."""
        for connection in tuple(self._bindings.get(conversation_id, ())):
            connection.send(text)
        if share:
            self.outlet.broadcast(conversation_id, text)

    def unbind_all(self, conversation_id: str, *, share: bool = True) -> None:
        bound = self._bindings.pop(conversation_id, None)
        if share:
            self.outlet.unbind(conversation_id)
        if bound is not None:
            for connection in bound:
                connection.conversations.discard(conversation_id)
            self.outlet.unwatch(conversation_id)

    def encode(self, event: StoredEvent) -> str:
        """The frame for a stored event; an oversize message becomes the 413 ``message_link`` fallback."""
        text = frame(event.event_type, event.wire_payload())
        if len(text) > self._max_outbound and event.message_id is not None:
            text = frame(
                "general_error",
                {
                    "conversation_id": event.conversation_id,
                    "error_code": 413,
                    "error_desc": "message too large for a WebSocket frame; fetch it from message_link",
                    "message_link": f"{self._link_base().rstrip('/')}/api/custom-channel/messages/"
                    f"{event.conversation_id}/{event.message_id}",
                    "seq": event.seq,
                    "message_id": event.message_id,
                },
            )
        return text

    def publish(self, event: StoredEvent) -> None:
        """A just-committed event: to this process's bound sockets, and to the outlet."""
        text = self.encode(event)
        self.publish_frame(event.conversation_id, event.seq, text)
        self.outlet.event(event.conversation_id, event.seq, text)

    def publish_frame(self, conversation_id: str, seq: int, text: str) -> None:
        """An encoded stored event (ours, or another process's) to the bound sockets, in ``seq`` order."""
        bound = self._bindings.get(conversation_id)
        if not bound:
            return
        for connection in tuple(bound):
            last = connection.position(conversation_id)
            if (
                last is not None
                and seq > last + 1
                and self.on_gap is not None
                and not connection.replaying(conversation_id)
            ):
                self.on_gap(
                    connection, conversation_id
                )  # the fill delivers this one too, after the missing ones
                continue
            connection.deliver(conversation_id, seq, text)

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        connections = list(self._connections.values())
        await asyncio.gather(*(c.close(code, reason) for c in connections), return_exceptions=True)
