"""The hub: live sockets, which conversations each is bound to (PROTOCOL.md section 3), and fan-out.

Every socket has a bounded send queue drained by its own writer task, so one slow reader never slows
the others; a socket whose queue overflows is closed (1013) and catches up later by ``subscribe``.
Events of a conversation are delivered at most once per socket and in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..protocol import encode_frame
from .store import Channel, Store, StoredEvent

if TYPE_CHECKING:
    from .broker import Broker

log = logging.getLogger("captivate_chat_api.server.hub")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class WebSocketLike(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Connection:
    """One accepted WebSocket of one channel."""

    def __init__(self, websocket: WebSocketLike, channel: Channel, queue_frames: int, role: str = "client") -> None:
        self.socket_id = uuid.uuid4().hex
        self.channel = channel
        self.role = role
        """``client`` (a custom channel's socket) or ``human`` (a live-chat agent's)."""
        self.credential: str | None = None
        """The digest of the key or token the socket was opened with (rechecked for revocation)."""
        self.conversations: set[str] = set()
        self._websocket = websocket
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(queue_frames)
        self._delivered: dict[str, int] = {}
        self._writer: asyncio.Task[None] | None = None
        self._close_code: int | None = None
        self.closed = asyncio.Event()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._drain(), name=f"ws-writer-{self.socket_id[:8]}")

    async def _drain(self) -> None:
        try:
            while (text := await self._queue.get()) is not None:
                await self._websocket.send_text(text)
        except Exception as exc:  # noqa: BLE001 (see below: any failure closes the socket)
            # Usually the peer went away mid-send (the reader side cleans up). Anything else must not leave an
            # open socket that never speaks again: close it (1011) so the client reconnects and resubscribes.
            log.debug("socket %s write failed: %r", self.socket_id[:8], exc)
            self._begin_close(CLOSE_INTERNAL_ERROR, "send failed; reconnect and subscribe")
        finally:
            self.closed.set()
            if self._close_code is not None:
                with contextlib.suppress(Exception):
                    await self._websocket.close(self._close_code, self._close_reason)

    @property
    def accepting(self) -> bool:
        return self._close_code is None and not self.closed.is_set()

    def send(self, text: str) -> None:
        """Queue a frame (a direct reply, or an event already checked by :meth:`deliver`)."""
        if not self.accepting:
            return
        try:
            self._queue.put_nowait(text)
        except asyncio.QueueFull:
            log.warning("socket %s closed: send queue full (slow consumer)", self.socket_id[:8])
            self._begin_close(CLOSE_TRY_AGAIN_LATER, "send queue overflow; reconnect and subscribe")
            if self._writer is not None:
                self._writer.cancel()

    def deliver(self, conversation_id: str, seq: int, text: str) -> None:
        """Send one event of a conversation unless this socket already had that ``seq``."""
        if seq <= self._delivered.get(conversation_id, 0):
            return
        self._delivered[conversation_id] = seq
        self.send(text)

    async def replay(self, conversation_id: str, seq: int, text: str, patience: float = 10.0) -> None:
        """:meth:`deliver` for a subscribe's replay: waits for room in the queue, so that a backlog larger
        than the queue does not close the socket that asked for it; overflows (1013) only if the queue
        stays full for ``patience`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience
        while self._queue.full() and self.accepting and loop.time() < deadline:
            await asyncio.sleep(0.005)
        self.deliver(conversation_id, seq, text)

    def position(self, conversation_id: str) -> int | None:
        """The last ``seq`` of the conversation this socket had, or None if it never had one."""
        return self._delivered.get(conversation_id)

    def rewind(self, conversation_id: str, after_seq: int) -> None:
        """Start delivery of a conversation after ``after_seq`` (a subscribe)."""
        self._delivered[conversation_id] = after_seq

    def _begin_close(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code, self._close_reason = code, reason

    async def close(self, code: int, reason: str, flush_timeout: float = 2.0) -> None:
        """Close after the frames already queued are written (bounded by ``flush_timeout``)."""
        if self._close_code is not None:
            return
        self._begin_close(code, reason)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)
        if self._writer is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._writer), flush_timeout)
            except (TimeoutError, asyncio.CancelledError):
                self._writer.cancel()
                with contextlib.suppress(Exception):  # bounded: a peer that stopped reading would hang shutdown
                    await asyncio.wait_for(self._websocket.close(code, reason), flush_timeout)

    async def stop(self) -> None:
        """The peer is gone: stop the writer."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer


class RemoteSocket:
    """A socket of another gateway process, named by a client event's ``socket_id``.

    What is sent to it or bound to it travels through the broker; the process that has the socket checks
    that it belongs to ``channel_id`` before doing anything (a foreign socket id binds nothing)."""

    role = "client"

    def __init__(self, hub: Hub, socket_id: str, channel_id: str) -> None:
        self.hub = hub
        self.socket_id = socket_id
        self.channel_id = channel_id
        self.conversations: frozenset[str] = frozenset()

    def send(self, text: str) -> None:
        self.hub._share({"t": "direct", "sid": self.socket_id, "ch": self.channel_id, "frame": text})


class Hub:
    def __init__(self, *, max_outbound_frame_bytes: int, message_link_base: Callable[[], str]) -> None:
        self.broker: Broker | None = None
        self.store: Store | None = None
        self.subscriber: Callable[[Connection, str, int | None], Awaitable[int]] | None = None
        self._fills: set[asyncio.Task[None]] = set()
        self._connections: dict[str, Connection] = {}
        self._bindings: dict[str, set[Connection]] = defaultdict(set)
        self._watchers: dict[str, set[Connection]] = defaultdict(set)
        self._max_outbound = max_outbound_frame_bytes
        self._link_base = message_link_base

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
            self._share({"t": "notify", "ch": channel_id, "frame": text})

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
        connection.conversations.clear()

    def find(self, socket_id: str | None, channel_id: str) -> Connection | None:
        """The live socket with that id, only if it belongs to the same channel (else as if unknown)."""
        if not socket_id:
            return None
        connection = self._connections.get(socket_id)
        if connection is None or connection.channel.id != channel_id or not connection.accepting:
            return None
        return connection

    def find_client(self, socket_id: str | None, channel_id: str) -> Connection | RemoteSocket | None:
        """Like :meth:`find`, for client events: a human agent's socket is never bound by a client. With a
        broker, an id that is not here may be another process's socket."""
        connection = self.find(socket_id, channel_id)
        if connection is not None:
            return connection if connection.role == "client" else None
        if socket_id and self.broker is not None and socket_id not in self._connections:
            return RemoteSocket(self, socket_id, channel_id)
        return None

    def bind(self, conversation_id: str, connection: Connection | RemoteSocket) -> None:
        if isinstance(connection, RemoteSocket):
            self._share({"t": "bind", "sid": connection.socket_id, "ch": connection.channel_id, "cid": conversation_id})
            return
        if conversation_id in connection.conversations:
            return
        connection.conversations.add(conversation_id)
        self._bindings[conversation_id].add(connection)

    def broadcast(self, conversation_id: str, text: str, *, share: bool = True) -> None:
        """Send a frame that is not part of the stored log (it has no ``seq``)."""
        for connection in tuple(self._bindings.get(conversation_id, ())):
            connection.send(text)
        if share:
            self._share({"t": "broadcast", "cid": conversation_id, "frame": text})

    def unbind_all(self, conversation_id: str, *, share: bool = True) -> None:
        for connection in self._bindings.pop(conversation_id, set()):
            connection.conversations.discard(conversation_id)
        if share:
            self._share({"t": "unbind", "cid": conversation_id})

    def encode(self, event: StoredEvent) -> str:
        """The frame for a stored event; an oversize message becomes the 413 ``message_link`` fallback."""
        payload = event.wire_payload()
        text = encode_frame(event.event_type, payload)
        if len(text) > self._max_outbound and event.message_id is not None:
            text = encode_frame(
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
        bound = self._bindings.get(event.conversation_id)
        if not bound and self.broker is None:
            return
        text = self.encode(event)
        for connection in tuple(bound or ()):
            if self.broker is None:
                connection.deliver(event.conversation_id, event.seq, text)
            else:  # an earlier seq stored by another process may still be on its way through the broker
                self._deliver_in_order(connection, event.conversation_id, event.seq, text)
        self._share({"t": "event", "cid": event.conversation_id, "seq": event.seq, "frame": text})

    # several processes -----------------------------------------------------------------------------

    def attach(
        self,
        broker: Broker,
        store: Store,
        subscriber: Callable[[Connection, str, int | None], Awaitable[int]],
    ) -> None:
        """Share with the other gateway processes through ``broker``; catch up from ``store``."""
        self.broker, self.store, self.subscriber = broker, store, subscriber

    def _share(self, message: dict[str, Any]) -> None:
        if self.broker is not None:
            self.broker.publish(message)

    def on_broker_message(self, message: dict[str, Any]) -> None:
        """Another process's news, for this process's sockets."""
        kind = message.get("t")
        if kind == "event":
            for bound in tuple(self._bindings.get(message["cid"], ())):
                self._deliver_in_order(bound, message["cid"], int(message["seq"]), message["frame"])
        elif kind == "broadcast":
            self.broadcast(message["cid"], message["frame"], share=False)
        elif kind == "unbind":
            self.unbind_all(message["cid"], share=False)
        elif kind == "notify":
            self.notify_channel(message["ch"], message["frame"], share=False)
        elif kind in ("bind", "direct", "subscribe"):
            connection = self.find(message.get("sid"), message.get("ch", ""))
            if connection is None or connection.role != "client":
                return  # not here, gone, or not that channel's: nothing happens
            if kind == "bind":
                self.bind(message["cid"], connection)
            elif kind == "direct":
                connection.send(message["frame"])
            elif self.subscriber is not None:
                self._spawn(self.subscriber(connection, message["cid"], message.get("after")))

    def _deliver_in_order(self, connection: Connection, conversation_id: str, seq: int, text: str) -> None:
        """Events of one conversation may reach this process out of order (two processes published them):
        a gap is filled from the store, which has every committed event, before going on."""
        last = connection.position(conversation_id)
        if last is not None and seq > last + 1:
            self._spawn(self._fill(connection, conversation_id))
            return
        connection.deliver(conversation_id, seq, text)

    async def _fill(self, connection: Connection, conversation_id: str) -> None:
        if self.store is None:
            return
        while True:
            last = connection.position(conversation_id) or 0
            batch = await self.store.events_after(conversation_id, last, limit=500)
            for event in batch:
                connection.deliver(conversation_id, event.seq, self.encode(event))
            if len(batch) < 500:
                return

    async def resync(self) -> None:
        """After the broker link was lost: every bound socket catches up from the store."""
        for conversation_id, connections in list(self._bindings.items()):
            for connection in tuple(connections):
                await self._fill(connection, conversation_id)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._fills.add(task)
        task.add_done_callback(self._fills.discard)

    async def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "server shutting down") -> None:
        connections = list(self._connections.values())
        await asyncio.gather(*(c.close(code, reason) for c in connections), return_exceptions=True)
