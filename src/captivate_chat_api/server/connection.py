"""One accepted WebSocket (the seam between the gateway and a socket library), and the close codes.

A frame is written on the caller's stack while the socket takes it at once (no task, no queue: the
common case). Behind one it could not take (a peer that reads slowly), frames wait in a bounded queue
that a writer task drains, so one slow reader never slows the others; a socket whose queue overflows is
closed (1013) and catches up later by ``subscribe``.
Events of a conversation are delivered at most once per socket and in ``seq`` order; while a
``subscribe`` replays a conversation, its live events are held back and follow the replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from .eager import Continuation
from .store import Channel

log = logging.getLogger("captivate_chat_api.server.hub")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013


class WebSocketLike(Protocol):
    async def send_text(self, data: str) -> None: ...

    async def close(self, code: int = 1000, reason: str | None = None) -> None: ...


class Connection:
    """One accepted WebSocket of one channel.

    Per-socket state is kept small (a gateway holds thousands of idle sockets): slots, and the send queue,
    the replay state and the ``closed`` event exist only once they are needed."""

    __slots__ = (
        "_backlog",
        "_close_code",
        "_close_reason",
        "_closed",
        "_delivered",
        "_direct",
        "_done",
        "_held",
        "_limit",
        "_replays",
        "_websocket",
        "_writer",
        "channel",
        "conversations",
        "credential",
        "role",
        "socket_id",
    )

    is_remote = False

    def __init__(
        self, websocket: WebSocketLike, channel: Channel, queue_frames: int, role: str = "client"
    ) -> None:
        self.socket_id = uuid.uuid4().hex
        self.channel = channel
        self.role = role
        """``client`` (a custom channel's socket) or ``human`` (a live-chat agent's)."""
        self.credential: str | None = None
        """The digest of the key or token the socket was opened with (rechecked for revocation)."""
        self.conversations: set[str] = set()
        self._websocket = websocket
        self._direct: Callable[[str], bool] | None = getattr(websocket, "try_send", None)
        """A socket that can say at once whether it took a frame (:class:`.client_socket.ClientSocket`)."""
        self._limit = queue_frames
        self._backlog: deque[str] | None = None
        """Frames waiting behind one the socket could not take at once (a peer that reads slowly)."""
        self._delivered: dict[str, int] = {}
        self._held: dict[str, list[tuple[int, str]]] | None = None
        """Live events of conversations being replayed (a ``subscribe`` in progress), in arrival order."""
        self._replays: dict[str, int] | None = None
        self._writer: asyncio.Task[None] | None = None
        """Runs only while frames wait (the socket is busy), and to close."""
        self._close_code: int | None = None
        self._close_reason = ""
        self._done = False
        self._closed: asyncio.Event | None = None

    @property
    def closed(self) -> asyncio.Event:
        """Set once the socket is closed (or its peer is gone)."""
        if self._closed is None:
            self._closed = asyncio.Event()
            if self._done:
                self._closed.set()
        return self._closed

    def _mark_closed(self) -> None:
        self._done = True
        if self._closed is not None:
            self._closed.set()

    def start(self) -> None:
        """Nothing to start: a socket needs no task until a frame has to wait (kept for the routes)."""

    def _write_now(self, text: str) -> None:
        """Write a frame on the caller's stack (no task, no queue): the socket takes it at once unless its
        transport is paused; then a writer task finishes it and the frames after it queue."""
        direct = self._direct
        try:
            if direct is not None:
                if direct(text):
                    return
                first: Awaitable[None] = self._websocket.send_text(text)
            else:
                coro = self._websocket.send_text(text)
                try:
                    pending = coro.send(None)
                except StopIteration:
                    return
                first = Continuation(coro, pending)
        except Exception as exc:  # noqa: BLE001 -- a failed write must close its socket
            self._write_failed(exc)
            return
        self._writer = asyncio.create_task(self._drain(first), name=f"ws-writer-{self.socket_id[:8]}")

    def _write_failed(self, exc: BaseException) -> None:
        # Usually the peer went away mid-send (the reader side cleans up). Anything else must not leave an
        # open socket that never speaks again: close it (1011) so the client reconnects and resubscribes.
        log.debug("socket %s write failed: %r", self.socket_id[:8], exc)
        self._begin_close(CLOSE_INTERNAL_ERROR, "send failed; reconnect and subscribe")
        self._backlog = None
        if self._writer is None:
            self._writer = asyncio.create_task(self._drain(None), name=f"ws-close-{self.socket_id[:8]}")

    async def _drain(self, first: Awaitable[None] | None) -> None:
        """Finish the write in flight, then the frames queued behind it, in order; close if asked to."""
        try:
            if first is not None:
                await first
            while self._backlog:
                await self._websocket.send_text(self._backlog.popleft())
        except Exception as exc:  # noqa: BLE001 -- a dead writer must close its socket
            self._write_failed(exc)  # (this task is the writer: it closes the socket below)
        self._backlog = None
        if self._close_code is None:
            self._writer = None  # idle again (no await since the backlog was found empty)
            return
        await self._shut()

    async def _shut(self) -> None:
        self._mark_closed()
        with contextlib.suppress(Exception):
            await self._websocket.close(self._close_code or CLOSE_INTERNAL_ERROR, self._close_reason)

    async def _abandon(self, writer: asyncio.Task[None]) -> None:
        """A writer cancelled because the queue overflowed: close the socket once it has stopped."""
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
        await self._shut()

    @property
    def channel_id(self) -> str:
        return self.channel.id

    @property
    def accepting(self) -> bool:
        return self._close_code is None and not self._done

    def send(self, text: str) -> None:
        """Send a frame (a direct reply, or an event already checked by :meth:`deliver`): written now when
        the socket is idle, else queued behind the frames before it."""
        if self._close_code is not None or self._done:
            return
        if self._writer is None:
            self._write_now(text)
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = deque()
        elif len(backlog) >= self._limit:
            self._overflow()
            return
        backlog.append(text)

    def _queued(self) -> int:
        return len(self._backlog) if self._backlog is not None else 0

    def _overflow(self) -> None:
        log.warning("socket %s closed: send queue full (slow consumer)", self.socket_id[:8])
        self._begin_close(CLOSE_TRY_AGAIN_LATER, "send queue overflow; reconnect and subscribe")
        self._backlog = None
        writer = self._writer
        if writer is not None:
            writer.cancel()
            self._writer = asyncio.create_task(self._abandon(writer))
        else:
            self._writer = asyncio.create_task(self._shut())

    def deliver(self, conversation_id: str, seq: int, text: str) -> None:
        """Send one event of a conversation unless this socket already had that ``seq`` (held back while the
        conversation is being replayed to this socket)."""
        if self._held is not None:
            held = self._held.get(conversation_id)
            if held is not None:
                held.append((seq, text))
                return
        if seq <= self._delivered.get(conversation_id, 0):
            return
        self._delivered[conversation_id] = seq
        self.send(text)

    def start_at(self, conversation_id: str, seq: int) -> None:
        """Bound from ``seq`` on: later events only (unless the socket had some of the conversation already)."""
        self._delivered.setdefault(conversation_id, seq)

    def begin_replay(self, conversation_id: str, after_seq: int) -> None:
        """A ``subscribe``: deliver the conversation from ``after_seq`` on; live events wait for :meth:`end_replay`."""
        self._delivered[conversation_id] = after_seq
        if self._replays is None:
            self._replays = {}
        if self._held is None:
            self._held = {}
        self._replays[conversation_id] = self._replays.get(conversation_id, 0) + 1
        self._held.setdefault(conversation_id, [])

    def replaying(self, conversation_id: str) -> bool:
        return self._held is not None and conversation_id in self._held

    async def replay(self, conversation_id: str, seq: int, text: str, patience: float = 10.0) -> None:
        """Deliver a replayed event at the reader's pace: waits while the queue is half full, so that a
        backlog larger than the queue does not close the socket that asked for it, and the other half is
        left for what follows the replay (its reply, the live events held meanwhile: a replay that filled the
        queue to the brim made the reply overflow it). Overflows (1013) only if the socket takes nothing for
        ``patience`` seconds."""
        mark = max(1, self._limit // 2)
        if self._queued() >= mark:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + patience
            while self._queued() >= mark and self.accepting:
                if loop.time() >= deadline:
                    self._overflow()
                    return
                await asyncio.sleep(0.005)
        if seq > self._delivered.get(conversation_id, 0):
            self._delivered[conversation_id] = seq
            self.send(text)

    def end_replay(self, conversation_id: str) -> None:
        """The replay is over: the live events that came meanwhile follow, in order, each once."""
        replays = self._replays if self._replays is not None else {}
        left = replays.get(conversation_id, 1) - 1
        if left > 0:
            replays[conversation_id] = left
            return
        replays.pop(conversation_id, None)
        held = self._held.pop(conversation_id, ()) if self._held is not None else ()
        if not replays:
            self._replays = self._held = None
        for seq, text in sorted(held, key=lambda item: item[0]):
            self.deliver(conversation_id, seq, text)

    def position(self, conversation_id: str) -> int | None:
        """The last ``seq`` of the conversation this socket had, or None if it never had one."""
        return self._delivered.get(conversation_id)

    def _begin_close(self, code: int, reason: str) -> None:
        if self._close_code is None:
            self._close_code, self._close_reason = code, reason

    async def close(self, code: int, reason: str, flush_timeout: float = 2.0) -> None:
        """Close after the frames already queued are written (bounded by ``flush_timeout``)."""
        if self._close_code is not None:
            return
        self._begin_close(code, reason)
        writer = self._writer
        if writer is None:
            writer = self._writer = asyncio.create_task(self._drain(None))
        try:
            await asyncio.wait_for(asyncio.shield(writer), flush_timeout)
        except (TimeoutError, asyncio.CancelledError):
            writer.cancel()
            with contextlib.suppress(Exception):  # bounded: a peer that stopped reading would hang shutdown
                await asyncio.wait_for(self._websocket.close(code, reason), flush_timeout)

    def lost(self) -> asyncio.Task[None] | None:
        """The peer is gone: stop writing (returns the writer it cancelled, if one ran)."""
        self._backlog = None
        writer = self._writer
        self._mark_closed()
        if writer is not None and not writer.done():
            writer.cancel()
            return writer
        return None

    async def stop(self) -> None:
        """The peer is gone: stop writing, and wait until the writer has stopped."""
        writer = self.lost()
        if writer is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
