"""A conversation: send client events, and receive its platform events in ``seq`` order, exactly once.

Events reach a conversation only if they carry its ``conversation_id``. They are delivered two ways:
callbacks (``on_message`` …), called one at a time in order from a task of this conversation, and
``events()`` async iterators, each with its own queue. Events that arrive before anybody listens
(a bot-first greeting) are kept and handed to the first consumer that attaches.

A conversation talks to the platform through a :class:`ConversationLink` (the client implements it), so
this module does not know the client class.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypeVar

from ..protocol import PlatformEvent, TranscriptEntry, text_content
from ..protocol.files import TTL_DAYS
from .files import FileManager, FileService, refresh_files, wire_content
from .inbox import END, Inbox
from .models import PageInfo, SentMessage
from .session import Cursor

log = logging.getLogger("captivate_chat_api.client")

F = TypeVar("F", bound=Callable[..., Any])
ALLOWED_TTL_DAYS = TTL_DAYS


class ConversationLink(Protocol):
    """What a conversation needs from its client."""

    api_key: str
    files: FileService

    async def request(
        self, event_type: str, payload: dict[str, Any], *, idempotent: bool = False
    ) -> dict[str, Any]: ...

    async def send_message(self, payload: dict[str, Any]) -> dict[str, Any]: ...

    async def transcript(self, conversation_id: str) -> list[TranscriptEntry]: ...

    async def subscribe(self, conversation_id: str, after_seq: int | None) -> dict[str, Any]: ...

    def forget(self, conversation_id: str) -> None: ...


class Conversation:
    def __init__(
        self,
        link: ConversationLink,
        conversation_id: str,
        metadata: dict[str, Any] | None = None,
        *,
        cursor: Cursor | None = None,
    ) -> None:
        self._link = link
        self.conversation_id = conversation_id
        self.metadata: dict[str, Any] = dict(metadata or {})
        self.time_to_live: int | None = None
        self.cursor = cursor or Cursor()
        self.inbox = Inbox(conversation_id)
        self._file_manager: FileManager | None = None

    @property
    def last_seq(self) -> int:
        """The highest ``seq`` received (0: none yet). Store it to resume with ``get_conversation``."""
        return self.cursor.last_seq

    @last_seq.setter
    def last_seq(self, value: int) -> None:
        self.cursor.last_seq = value

    @property
    def closed(self) -> bool:
        """True once the conversation was deleted or its client closed (its streams have ended)."""
        return self.inbox.closed

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
        self.inbox.add(kind, callback)
        return callback

    def events(self) -> EventStream:
        """Every event of this conversation, typed (:class:`BotMessage`, :class:`LivechatMessage`,
        :class:`Action`, :class:`ConversationUpdate`, :class:`GeneralError`, echoes …), until it is deleted
        or the client is closed. The stream starts collecting when this is called, not at the first ``await``::

            async for event in conversation.events():
                ...
        """
        return EventStream(self.inbox.queue(), self.inbox.discard)

    # sending ---------------------------------------------------------------------------------------

    @property
    def file_manager(self) -> FileManager:
        """Uploads for this conversation (npm ``conversation.fileManager``): ``create``, ``create_file``,
        ``create_multiple``; they carry this conversation's ``path`` and its :meth:`set_time_to_live`."""
        if self._file_manager is None:
            self._file_manager = FileManager(
                self._link.files, f"{self._link.api_key}/{self.conversation_id}", lambda: self.time_to_live
            )
        return self._file_manager

    async def send_message(
        self, content: str | dict[str, Any] | list[Any], *, client_msg_id: str | None = None
    ) -> SentMessage:
        """Send a user message (a string becomes ``{type: "text", text}``). Files go in ``files``: a
        :class:`FileInput`, a :class:`FileObject` or a list of them (``{"text": "…", "files": fi}``).

        Returns the accepted message. It is sent with a UUID ``client_msg_id`` and retried with that same
        id when the acknowledgement is lost, so it is stored once.
        """
        body = wire_content(content) if not isinstance(content, str) else text_content(content)
        msg_id = client_msg_id or str(uuid.uuid4())
        payload = {
            "type": "message_create",
            "client_msg_id": msg_id,
            "conversation_id": self.conversation_id,
            "content": body,
        }
        ack = await self._link.send_message(payload)
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
        await self._link.request(
            "metadata",
            {
                "metadata": metadata,
                "client_msg_id": f"metadata-{uuid.uuid4()}",
                "conversation_id": self.conversation_id,
            },
        )
        self.metadata.update({k: v for k, v in metadata.items() if k != "private"})

    async def set_private_metadata(self, private_metadata: dict[str, Any]) -> None:
        """Private metadata reaches the agent but is never returned to a client."""
        if not isinstance(private_metadata, dict):
            raise TypeError("private_metadata must be a dict")
        await self.set_metadata({"private": private_metadata})

    async def get_metadata(self) -> dict[str, Any]:
        body = await self._link.request("metadata_request", {"conversation_id": self.conversation_id})
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
        await self._link.request(
            "action",
            {"type": "normal", "id": action_id, "data": data or {}, "conversation_id": self.conversation_id},
        )

    async def edit_message(self, message_id: str, content: str | dict[str, Any]) -> None:
        body = wire_content(content) if not isinstance(content, str) else text_content(content)
        await self._link.request(
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
        entries = await self._link.transcript(self.conversation_id)
        return list(await asyncio.gather(*(self._refresh_files(entry) for entry in entries)))

    async def _refresh_files(self, entry: TranscriptEntry) -> TranscriptEntry:
        if not entry.files:
            return entry
        files, changed = await refresh_files(entry.files, self._link.files)
        if not changed:
            return entry
        content = entry.content if isinstance(entry.content, dict) else {"text": ""}
        try:
            await self.edit_message(entry.message_id, {**content, "files": files})
        except Exception as exc:  # noqa: BLE001 (the refreshed URLs are still returned)
            log.warning("could not push refreshed file URLs in %s: %s", self.conversation_id, exc)
        return entry.model_copy(update={"files": files})

    async def delete(self, *, soft_delete: bool = True) -> None:
        await self._link.request(
            "delete_conversation", {"conversation_id": self.conversation_id, "softdelete": soft_delete}
        )
        self._link.forget(self.conversation_id)

    async def subscribe(self, after_seq: int | None = None) -> dict[str, Any]:
        """Replay every event after ``after_seq`` (default: the last one received), then live (gateway only)."""
        return await self._link.subscribe(
            self.conversation_id, self.last_seq if after_seq is None else after_seq
        )


class EventStream:
    """An async iterator over one conversation's events (see :meth:`Conversation.events`)."""

    def __init__(self, queue: asyncio.Queue[Any], discard: Callable[[asyncio.Queue[Any]], None]) -> None:
        self._queue = queue
        self._discard = discard

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> PlatformEvent:
        item = await self._queue.get()
        if item is END:
            self.close()
            raise StopAsyncIteration
        event: PlatformEvent = item
        return event

    async def next(self, timeout: float | None = None) -> PlatformEvent:
        """The next event, waiting at most ``timeout`` seconds (``asyncio.TimeoutError`` after that)."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        """Stop collecting events."""
        self._discard(self._queue)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class UserConversations:
    conversations: list[Conversation]
    pagination: PageInfo | None = None
