"""A conversation: send client events, and receive its platform events in ``seq`` order, exactly once.

Events reach a conversation only if they carry its ``conversation_id``. They are delivered two ways:
callbacks (``on_message`` …), called one at a time in order from a task of this conversation, and
``events()`` async iterators, each with its own queue. Events that arrive before anybody listens
(a bot-first greeting) are kept and handed to the first consumer that attaches.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from ..protocol import (
    Action,
    BotMessage,
    ConversationUpdate,
    GeneralError,
    LivechatMessage,
    PlatformEvent,
    TranscriptEntry,
    UserMessageEcho,
    is_empty_text,
    text_content,
)
from ..protocol.files import TTL_DAYS
from .files import FileManager, refresh_files, wire_content
from .models import ConversationUpdateInfo, ErrorInfo, SentMessage

if TYPE_CHECKING:
    from .api import CaptivateChatAPI

log = logging.getLogger("captivate_chat_api.client")

F = TypeVar("F", bound=Callable[..., Any])
MessageKind = str  # "ai_agent" | "human_agent" | "error"
ALLOWED_TTL_DAYS = TTL_DAYS
BACKLOG_LIMIT = 1000
_END = object()


class Conversation:
    def __init__(self, api: CaptivateChatAPI, conversation_id: str, metadata: dict[str, Any] | None = None) -> None:
        self._api = api
        self.conversation_id = conversation_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.last_seq = 0
        """The highest ``seq`` received (0: none yet). Store it to resume with ``get_conversation``."""
        self.time_to_live: int | None = None
        self._synced = False
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._queues: set[asyncio.Queue[Any]] = set()
        self._backlog: list[PlatformEvent] = []
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None
        self.closed = False
        self._file_manager: FileManager | None = None

    def __repr__(self) -> str:
        return f"<Conversation {self.conversation_id} last_seq={self.last_seq}>"

    # receiving -------------------------------------------------------------------------------------

    def on_message(self, callback: F) -> F:
        """``callback(message, kind)``; kind is ``"ai_agent"``, ``"human_agent"`` or ``"error"``. Usable as a decorator."""
        return self._add("message", callback)

    def on_error(self, callback: F) -> F:
        """``callback(ErrorInfo)`` for each ``general_error`` of this conversation."""
        return self._add("error", callback)

    def on_conversation_update(self, callback: F) -> F:
        """``callback(ConversationUpdateInfo)``: live chat started/ended, title or metadata changed, deleted …"""
        return self._add("update", callback)

    def on_action_received(self, callback: F) -> F:
        """``callback(actions)`` with the list of ``{id, data}`` the agent sent."""
        return self._add("action", callback)

    def on_event(self, callback: F) -> F:
        """``callback(event)`` for every typed event of this conversation (echoes of user messages included)."""
        return self._add("event", callback)

    def _add(self, kind: str, callback: F) -> F:
        first_consumer = not self._handlers and not self._queues
        self._handlers.setdefault(kind, []).append(callback)
        if first_consumer and self._backlog:
            backlog, self._backlog = self._backlog, []
            for event in backlog:
                self._inbox.put_nowait(event)
        self._ensure_dispatcher()
        return callback

    def events(self) -> EventStream:
        """Every event of this conversation, typed (:class:`BotMessage`, :class:`LivechatMessage`,
        :class:`Action`, :class:`ConversationUpdate`, :class:`GeneralError`, echoes …), until it is deleted
        or the client is closed. The stream starts collecting when this is called, not at the first ``await``::

            async for event in conversation.events():
                ...
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if not self._handlers and not self._queues and self._backlog:
            for event in self._backlog:
                queue.put_nowait(event)
            self._backlog = []
        if self.closed:
            queue.put_nowait(_END)
        self._queues.add(queue)
        return EventStream(queue, self._queues)

    def _accept(self, event: PlatformEvent) -> bool:
        """Take one event from the socket; False if it is a duplicate (a ``seq`` already seen)."""
        if event.seq is not None:
            if event.seq <= self.last_seq:
                return False
            if self._synced and event.seq > self.last_seq + 1:
                log.info("gap in %s: have %d, got %d; resubscribing", self.conversation_id, self.last_seq, event.seq)
                self._api._resubscribe_soon(self)
                return False
            self.last_seq = event.seq
        if isinstance(event, UserMessageEcho) and is_empty_text(event.content):
            return True  # the bot-first trigger is bookkeeping, not something the user said
        if not self._handlers and not self._queues:
            if len(self._backlog) < BACKLOG_LIMIT:
                self._backlog.append(event)
        else:
            for queue in self._queues:
                queue.put_nowait(event)
            if self._handlers:
                self._inbox.put_nowait(event)
                self._ensure_dispatcher()
        if isinstance(event, ConversationUpdate) and event.type == "deleted":
            self._api._forget(self)
            self._finish()
        return True

    def _mark_synced(self, last_seq: int | None = None) -> None:
        """From now on every ``seq`` is expected: a jump means a missed event (resubscribe)."""
        if last_seq is not None and last_seq < self.last_seq:
            return
        self._synced = True

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            try:
                self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop())
            except RuntimeError:  # no loop yet (handlers registered before connect): started on first event
                pass

    async def _dispatch_loop(self) -> None:
        while True:
            event = await self._inbox.get()
            if event is _END:
                return
            for call in self._calls_for(event):
                try:
                    result = call()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("a callback of conversation %s raised", self.conversation_id)

    def _calls_for(self, event: PlatformEvent | _ErrorNotice) -> list[Callable[[], Any]]:
        """The callbacks this event triggers, each bound to its arguments."""
        if isinstance(event, _ErrorNotice):
            info = ErrorInfo(event.error.conversation_id, event.error.error_code, event.error.error_desc)
            return [partial(cb, info) for cb in self._handlers.get("error", [])]
        calls: list[Callable[[], Any]] = [partial(cb, event) for cb in self._handlers.get("event", [])]
        messages = self._handlers.get("message", [])
        if isinstance(event, BotMessage):
            calls += [partial(cb, event.content, "ai_agent") for cb in messages]
        elif isinstance(event, LivechatMessage):
            calls += [partial(cb, event.content, "human_agent") for cb in messages]
        elif isinstance(event, GeneralError):
            info = ErrorInfo(event.conversation_id, event.error_code, event.error_desc)
            calls += [partial(cb, info) for cb in self._handlers.get("error", [])]
            calls += [partial(cb, f"[Error: {event.error_desc or 'Unknown error'}]", "error") for cb in messages]
        elif isinstance(event, Action):
            calls += [partial(cb, event.actions) for cb in self._handlers.get("action", [])]
        elif isinstance(event, ConversationUpdate):
            update = ConversationUpdateInfo(event.type, event.conversation_id, event.data)
            calls += [partial(cb, update) for cb in self._handlers.get("update", [])]
        return calls

    def _finish(self) -> None:
        self.closed = True
        for queue in self._queues:
            queue.put_nowait(_END)
        self._inbox.put_nowait(_END)

    def _notify_error(self, event: GeneralError) -> None:
        """Call the ``on_error`` callbacks only (the 413 fallback: the message itself went out as a reply)."""
        if self._handlers.get("error"):
            self._inbox.put_nowait(_ErrorNotice(event))
            self._ensure_dispatcher()

    # sending ---------------------------------------------------------------------------------------

    @property
    def file_manager(self) -> FileManager:
        """Uploads for this conversation (npm ``conversation.fileManager``): ``create``, ``create_file``,
        ``create_multiple``; they carry this conversation's ``path`` and its :meth:`set_time_to_live`."""
        if self._file_manager is None:
            self._file_manager = FileManager(
                self._api.files, f"{self._api.api_key}/{self.conversation_id}", lambda: self.time_to_live
            )
        return self._file_manager

    async def send_message(self, content: str | dict[str, Any] | list[Any], *, client_msg_id: str | None = None) -> SentMessage:
        """Send a user message (a string becomes ``{type: "text", text}``). Files go in ``files``: a
        :class:`FileInput`, a :class:`FileObject` or a list of them (``{"text": "…", "files": fi}``).

        Returns the accepted message. It is sent with a UUID ``client_msg_id`` and retried with that same
        id when the acknowledgement is lost, so it is stored once.
        """
        body = wire_content(content) if not isinstance(content, str) else text_content(content)
        msg_id = client_msg_id or str(uuid.uuid4())
        payload = {"type": "message_create", "client_msg_id": msg_id, "conversation_id": self.conversation_id, "content": body}
        ack = await self._api._send_message(payload)
        seq = ack.get("seq")
        return SentMessage(
            conversation_id=self.conversation_id,
            client_msg_id=msg_id,
            message_id=ack.get("message_id"),
            seq=seq if isinstance(seq, int) else None,
            duplicate=bool(ack.get("duplicate", False)),
        )

    async def set_metadata(self, metadata: dict[str, Any]) -> None:
        """Merge ``metadata`` into the conversation's metadata (a ``private`` key holds private metadata)."""
        if not isinstance(metadata, dict):
            raise TypeError("metadata must be a dict")
        await self._api._request(
            "metadata",
            {"metadata": metadata, "client_msg_id": f"metadata-{uuid.uuid4()}", "conversation_id": self.conversation_id},
        )
        self.metadata.update({k: v for k, v in metadata.items() if k != "private"})

    async def set_private_metadata(self, private_metadata: dict[str, Any]) -> None:
        """Private metadata reaches the agent but is never returned to a client."""
        if not isinstance(private_metadata, dict):
            raise TypeError("private_metadata must be a dict")
        await self.set_metadata({"private": private_metadata})

    async def get_metadata(self) -> dict[str, Any]:
        body = await self._api._request("metadata_request", {"conversation_id": self.conversation_id})
        metadata = body.get("metadata", body.get("content", body))
        if isinstance(metadata, dict):
            self.metadata = dict(metadata)
            return dict(metadata)
        return {}

    async def set_time_to_live(self, days: int) -> None:
        """Keep this conversation's uploaded files for ``days`` (1, 7, 30 or 90); stored as ``timeToLive``."""
        if days not in ALLOWED_TTL_DAYS:
            raise ValueError(f"days must be one of {ALLOWED_TTL_DAYS}")
        self.time_to_live = days
        await self.set_metadata({"timeToLive": days})

    async def send_action(self, action_id: str, data: dict[str, Any] | None = None) -> None:
        await self._api._request(
            "action", {"type": "normal", "id": action_id, "data": data or {}, "conversation_id": self.conversation_id}
        )

    async def edit_message(self, message_id: str, content: str | dict[str, Any]) -> None:
        body = wire_content(content) if not isinstance(content, str) else text_content(content)
        await self._api._request(
            "edit_message",
            {
                "type": "message_create",
                "client_msg_id": f"edit-{uuid.uuid4()}",
                "conversation_id": self.conversation_id,
                "message_id": message_id,
                "content": body,
            },
        )

    async def get_transcript(self) -> list[TranscriptEntry]:
        """The transcript, oldest first; stored file URLs expiring within 5 minutes are refreshed (and the
        refreshed URLs pushed back with ``edit_message``, as the npm client does)."""
        entries = await self._api._transcript(self.conversation_id)
        return list(await asyncio.gather(*(self._refresh_files(entry) for entry in entries)))

    async def _refresh_files(self, entry: TranscriptEntry) -> TranscriptEntry:
        if not entry.files:
            return entry
        files, changed = await refresh_files(entry.files, self._api.files)
        if not changed:
            return entry
        content = entry.content if isinstance(entry.content, dict) else {"text": ""}
        try:
            await self.edit_message(entry.message_id, {**content, "files": files})
        except Exception as exc:  # noqa: BLE001 -- the refreshed transcript is still returned
            log.warning("could not push refreshed file URLs in %s: %s", self.conversation_id, exc)
        return entry.model_copy(update={"files": files})

    async def delete(self, *, soft_delete: bool = True) -> None:
        await self._api._request("delete_conversation", {"conversation_id": self.conversation_id, "softdelete": soft_delete})
        self._api._forget(self)
        self._finish()

    async def subscribe(self, after_seq: int | None = None) -> dict[str, Any]:
        """Replay every event after ``after_seq`` (default: the last one received), then live (gateway only)."""
        return await self._api._subscribe(self, self.last_seq if after_seq is None else after_seq)


class _ErrorNotice:
    """An error for the ``on_error`` callbacks only (not an event of the stream)."""

    __slots__ = ("error",)

    def __init__(self, error: GeneralError) -> None:
        self.error = error


class EventStream:
    """An async iterator over one conversation's events (see :meth:`Conversation.events`)."""

    def __init__(self, queue: asyncio.Queue[Any], registry: set[asyncio.Queue[Any]]) -> None:
        self._queue = queue
        self._registry = registry

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> PlatformEvent:
        item = await self._queue.get()
        if item is _END:
            self.close()
            raise StopAsyncIteration
        event: PlatformEvent = item
        return event

    async def next(self, timeout: float | None = None) -> PlatformEvent:
        """The next event, waiting at most ``timeout`` seconds (``asyncio.TimeoutError`` after that)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        """Stop collecting events."""
        self._registry.discard(self._queue)

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


Callback = Callable[..., Awaitable[None] | None]
