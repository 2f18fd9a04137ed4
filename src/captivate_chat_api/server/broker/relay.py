"""The relay: this process's hub and the other gateway processes, through a broker.

What the hub fans out here (stored events, broadcasts, unbinds, hand-off notifications) goes to the other
processes as typed messages; what they send comes back to this hub. A client event may name another
process's socket (:class:`RemoteSocket`): binding, direct replies and subscribes for it travel too, and the
process that has the socket checks that it belongs to the channel before doing anything. Pub/sub is
at-most-once, so the store stays the source of truth: a socket that sees a ``seq`` gap is filled from the
store, and after a broker outage every bound socket catches up (:meth:`Relay.resync`).

The relay imports the hub; the hub never imports the relay.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from ..connection import Connection
from ..hub import Hub
from ..metrics import Metrics
from ..store import Store
from .base import Broker, BrokerMessage

log = logging.getLogger("captivate_chat_api.server.broker")

FILL_BATCH = 500
REMOTE_BINDS = 20_000

Subscriber = Callable[[Connection, str, "int | None"], Awaitable[int]]


# typed broker messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A stored event of a conversation, encoded once by the process that stored it."""

    kind: ClassVar[str] = "event"
    cid: str
    seq: int
    frame: str


@dataclass(frozen=True, slots=True)
class BroadcastMessage:
    """A frame for a conversation's sockets that is not in the log (a delta, a deletion)."""

    kind: ClassVar[str] = "broadcast"
    cid: str
    frame: str


@dataclass(frozen=True, slots=True)
class UnbindMessage:
    kind: ClassVar[str] = "unbind"
    cid: str


@dataclass(frozen=True, slots=True)
class NotifyMessage:
    """A hand-off notification for a channel's human agents."""

    kind: ClassVar[str] = "notify"
    ch: str
    frame: str


@dataclass(frozen=True, slots=True)
class BindMessage:
    kind: ClassVar[str] = "bind"
    sid: str
    ch: str
    cid: str
    seq: int | None = None
    """The conversation's last ``seq`` as the sender knew it: where the socket starts."""


@dataclass(frozen=True, slots=True)
class DirectMessage:
    """A direct reply for one socket of another process."""

    kind: ClassVar[str] = "direct"
    sid: str
    ch: str
    frame: str


@dataclass(frozen=True, slots=True)
class SubscribeMessage:
    kind: ClassVar[str] = "subscribe"
    sid: str
    ch: str
    cid: str
    after: int | None = None


RelayMessage = (
    EventMessage
    | BroadcastMessage
    | UnbindMessage
    | NotifyMessage
    | BindMessage
    | DirectMessage
    | SubscribeMessage
)
MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.kind: cls
    for cls in (
        EventMessage,
        BroadcastMessage,
        UnbindMessage,
        NotifyMessage,
        BindMessage,
        DirectMessage,
        SubscribeMessage,
    )
}


FIELDS: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in MESSAGE_TYPES.values()
}
"""Each message type's field names (``dataclasses.asdict`` deep-copies: a message is flat, its values plain)."""


def to_wire(message: RelayMessage) -> BrokerMessage:
    wire: BrokerMessage = {"t": message.kind}
    for name in FIELDS[type(message)]:
        wire[name] = getattr(message, name)
    return wire


def from_wire(data: BrokerMessage) -> RelayMessage | None:
    """The typed message, or None for an unknown kind or missing fields (a newer peer: ignored)."""
    cls = MESSAGE_TYPES.get(data.get("t", ""))
    if cls is None:
        return None
    try:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})  # type: ignore[no-any-return]
    except TypeError:
        return None


# ------------------------------------------------------------------------------------------------------


@dataclass(eq=False)
class RemoteSocket:
    """A socket of another gateway process, named by a client event's ``socket_id``."""

    relay: Relay
    socket_id: str
    channel_id: str
    role: ClassVar[str] = "client"
    is_remote: ClassVar[bool] = True
    conversations: frozenset[str] = field(default_factory=frozenset)

    def send(self, text: str) -> None:
        self.relay.share(DirectMessage(self.socket_id, self.channel_id, text))

    def bind(self, conversation_id: str, seq: int | None = None) -> None:
        self.relay.share(BindMessage(self.socket_id, self.channel_id, conversation_id, seq))
        self.relay.remember_bind(self.socket_id, self.channel_id, conversation_id)

    def subscribe(self, conversation_id: str, after_seq: int | None) -> None:
        self.relay.share(SubscribeMessage(self.socket_id, self.channel_id, conversation_id, after_seq))


class Relay:
    def __init__(self, hub: Hub, store: Store, broker: Broker, *, metrics: Metrics | None = None) -> None:
        self.hub = hub
        self.store = store
        self.broker = broker
        self.metrics = metrics or Metrics()
        self.subscriber: Subscriber | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._filling: dict[tuple[str, str], bool] = {}
        self._remote_binds: dict[tuple[str, str], set[str]] = {}
        """What this process bound other processes' sockets to (after checking the conversation), so that
        a socket's later events for it skip that check (the store write checks again)."""
        hub.outlet = self
        hub.on_gap = self.fill_soon

    async def start(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        await self.broker.start(self.on_broker_message, self.resync, self.on_watching)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.broker.close()

    @property
    def shared(self) -> bool:
        """Whether anybody else listens (a lone process on an in-process broker: nobody)."""
        return getattr(self.broker, "shared", True)

    def share(self, message: RelayMessage, conversation_id: str | None = None) -> None:
        """To every other process, or (``conversation_id``) to those watching the conversation."""
        if self.shared:
            self.broker.publish(to_wire(message), conversation_id)

    # the hub's outlet

    def event(self, conversation_id: str, seq: int, frame: str) -> None:
        # every stored event comes here: no message is built when nobody else listens
        if self.shared:
            self.broker.publish(to_wire(EventMessage(conversation_id, seq, frame)), conversation_id)

    def broadcast(self, conversation_id: str, frame: str) -> None:
        if self.shared:
            self.broker.publish(to_wire(BroadcastMessage(conversation_id, frame)), conversation_id)

    def unbind(self, conversation_id: str) -> None:
        self.forget_binds(conversation_id)
        self.share(UnbindMessage(conversation_id), conversation_id)

    def watch(self, conversation_id: str) -> None:
        self.broker.watch(conversation_id)

    def unwatch(self, conversation_id: str) -> None:
        self.broker.unwatch(conversation_id)

    def on_watching(self, conversation_id: str) -> None:
        """The broker hears the conversation now. What the others published between a socket's bind and
        this moment was not heard: each bound socket is filled from the store from where it is (the events
        committed since are in the store; what is published from now on comes live, each ``seq`` once)."""
        for connection in self.hub.bound(conversation_id):
            if connection.position(conversation_id) is not None:
                self.fill_soon(connection, conversation_id)

    def notify(self, channel_id: str, frame: str) -> None:
        self.share(NotifyMessage(channel_id, frame))

    # client events naming a socket

    def find_client(self, socket_id: str | None, channel_id: str) -> Connection | RemoteSocket | None:
        """This process's client socket, or (with other processes) a :class:`RemoteSocket` for an id that is
        not here."""
        connection = self.hub.find(socket_id, channel_id)
        if connection is not None:
            return connection if connection.role == "client" else None
        if socket_id and self.shared and not self.hub.has(socket_id):
            bound = self._remote_binds.get((socket_id, channel_id))
            return RemoteSocket(self, socket_id, channel_id, frozenset(bound or ()))
        return None

    def remember_bind(self, socket_id: str, channel_id: str, conversation_id: str) -> None:
        key = (socket_id, channel_id)
        bound = self._remote_binds.pop(key, None) or set()
        bound.add(conversation_id)
        self._remote_binds[key] = bound  # the newest last: the oldest go first
        if len(self._remote_binds) > REMOTE_BINDS:
            del self._remote_binds[next(iter(self._remote_binds))]

    def forget_binds(self, conversation_id: str) -> None:
        for key, bound in list(self._remote_binds.items()):
            bound.discard(conversation_id)
            if not bound:
                del self._remote_binds[key]

    # the others' news

    def on_broker_message(self, data: BrokerMessage) -> None:
        sent = data.get("ts")
        if isinstance(sent, (int, float)):
            self.metrics.set_broker_lag(time.time() - sent)
        message = from_wire(data)
        hub = self.hub
        if isinstance(message, EventMessage):
            hub.publish_frame(message.cid, int(message.seq), message.frame)
        elif isinstance(message, BroadcastMessage):
            hub.broadcast(message.cid, message.frame, share=False)
        elif isinstance(message, UnbindMessage):
            self.forget_binds(message.cid)
            hub.unbind_all(message.cid, share=False)
        elif isinstance(message, NotifyMessage):
            hub.notify_channel(message.ch, message.frame, share=False)
        elif isinstance(message, (BindMessage, DirectMessage, SubscribeMessage)):
            connection = hub.find_client(message.sid, message.ch)
            if connection is None:
                return  # not here, gone, or not that channel's: nothing happens
            if isinstance(message, BindMessage):
                hub.bind(message.cid, connection, message.seq)
            elif isinstance(message, DirectMessage):
                connection.send(message.frame)
            elif self.subscriber is not None:
                self._spawn(self.subscriber(connection, message.cid, message.after))

    # gaps and outages

    def fill_soon(self, connection: Connection, conversation_id: str) -> None:
        """Deliver what ``connection`` misses of a conversation, from the store (one fill at a time per
        socket and conversation; a gap found meanwhile makes it read once more)."""
        key = (connection.socket_id, conversation_id)
        if key in self._filling:
            self._filling[key] = True
            return
        self._filling[key] = False
        self._spawn(self._fill(connection, conversation_id, key))

    async def _fill(
        self, connection: Connection, conversation_id: str, key: tuple[str, str] | None = None
    ) -> None:
        try:
            while True:
                last = connection.position(conversation_id) or 0
                batch = await self.store.events_after(
                    connection.channel_id, conversation_id, last, limit=FILL_BATCH
                )
                for event in batch:
                    connection.deliver(conversation_id, event.seq, self.hub.encode(event))
                if len(batch) < FILL_BATCH and not (key is not None and self._filling.get(key)):
                    return
                if key is not None:
                    self._filling[key] = False
        finally:
            if key is not None:
                self._filling.pop(key, None)

    async def resync(self) -> None:
        """After the broker link was lost: every bound socket catches up from the store."""
        for connection in self.hub.connections():
            for conversation_id in tuple(connection.conversations):
                await self._fill(connection, conversation_id)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
