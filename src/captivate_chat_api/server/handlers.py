"""What the gateway does for each client event, whichever transport carried it (HTTP or WebSocket).

A handler returns a :class:`Reply` and never writes to a socket itself: the HTTP body, the legacy
WebSocket reply for 1.x clients, a frame for the socket the event named (whichever transport carried it),
and work to start once the reply is on its way (the agent turn). The routes send what the reply says.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from ..errors import ConversationNotFound, MessageNotFound, RateLimitError
from ..protocol import (
    ClientAction,
    ClientEnvelope,
    ConversationStart,
    DeleteConversation,
    DeleteUserConversations,
    EditMessage,
    GetUserConversations,
    GetUserConversationsV2,
    IncomingAction,
    MetadataRequest,
    ProtocolError,
    SetMetadata,
    Subscribe,
    TranscriptEntry,
    TranscriptRequest,
    UserMessage,
    encode_frame,
    is_empty_text,
    replies,
)
from ..protocol.envelope import use_fast_reader
from ..protocol.files import agent_file, content_files, content_text
from .agents.runner import AgentRunner
from .auth import Authenticator
from .broker.relay import RemoteSocket
from .connection import Connection
from .fastjson import frame
from .hub import Hub
from .limits import RateLimiter, check_size
from .metrics import Metrics
from .store import (
    Channel,
    ConversationRecord,
    EditForbidden,
    ListQuery,
    NewEvent,
    Store,
    StoredEvent,
    editable_by,
)
from .store.rules import check_metadata_size
from .timeline import Timeline

# client envelopes (WebSocket frames, POST bodies) are read by orjson where it reads them as the stdlib does
use_fast_reader(orjson.loads, orjson.JSONDecodeError)


class NotReplayable(ConversationNotFound):
    """``subscribe`` to a deleted, unknown or foreign conversation (alike, so a tenant learns nothing of
    another's): a 404 that also says explicitly that nothing was recovered."""

    def to_body(self) -> dict[str, object]:
        reason = "conversation not found or deleted: its events cannot be replayed"
        return {**super().to_body(), "recovered": False, "reason": reason}


@dataclass(slots=True)
class Reply:
    body: dict[str, Any]
    ws_event: str | None = None
    """The direct reply on the WebSocket, when the event came over it (its payload: ``ws_payload`` or ``body``)."""
    ws_payload: dict[str, Any] | None = None
    socket_event: tuple[str, dict[str, Any]] | None = None
    """``(event_type, payload)`` for the socket the event named, over either transport."""
    after: Callable[[], None] | None = None

    def socket_frame(self, request_id: str | None) -> str | None:
        if self.socket_event is None:
            return None
        return frame(self.socket_event[0], self.socket_event[1], request_id)

    def ws_frame(self, request_id: str | None) -> str | None:
        if self.ws_event is None:
            return None
        return frame(self.ws_event, self.ws_payload or self.body, request_id)


@dataclass(slots=True)
class Request:
    channel: Channel
    api_key: str
    envelope: ClientEnvelope
    connection: Connection | RemoteSocket | None
    via_websocket: bool


def transcript_entry(event: StoredEvent) -> dict[str, Any]:
    content = event.payload.get("content")
    entry: dict[str, Any] = {
        "message_id": event.message_id,
        "seq": event.seq,
        "sender": event.sender,
        "content": content,
        "created_at": event.created_at,
        "edited_at": event.edited_at or None,
        "client_msg_id": event.client_msg_id or None,
        # whichever of the npm client's three forms was sent: one list
        "files": content_files(content) or None,
    }
    if event.sender == "human_agent" and isinstance(event.payload.get("agent_name"), str):
        entry["agent_name"] = event.payload["agent_name"]
    return TranscriptEntry.model_validate(entry).to_wire()


def is_transcript_message(event: StoredEvent) -> bool:
    # The bot-first trigger (an empty user text) starts the conversation; it is not something the user said.
    return not (event.sender == "user" and is_empty_text(event.payload.get("content")))


def conversation_item(record: ConversationRecord, api_key: str) -> dict[str, Any]:
    return {
        "conversation_id": record.id,
        "metadata": record.metadata,
        "apiKey": api_key,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "last_seq": record.last_seq,
    }


def user_input_of(message: UserMessage) -> str:
    text = message.text
    if text is not None:
        return text
    content = message.content
    if isinstance(content, dict) and ("files" in content or isinstance(content.get("text"), str)):
        return content_text(content)  # a files-only message has no text: "" (never the content's JSON)
    return json.dumps(content, ensure_ascii=False)


class Handlers:
    def __init__(
        self,
        store: Store,
        hub: Hub,
        timeline: Timeline,
        runner: AgentRunner,
        auth: Authenticator,
        *,
        max_metadata_bytes: int = 16 * 1024,
        max_user_info_bytes: int = 4 * 1024,
        starts_per_minute: float = 600.0,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.max_metadata_bytes = max_metadata_bytes
        self.max_user_info_bytes = max_user_info_bytes
        self.starts = RateLimiter(starts_per_minute / 60.0, max(5.0, starts_per_minute / 6.0))
        self.store = store
        self.hub = hub
        self.timeline = timeline
        self.runner = runner
        self.auth = auth
        self.max_files_per_message = 10
        self.fresh_file_urls: (
            Callable[[str, list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]] | None
        ) = None
        """Gives the agent's copy of a message's stored files fresh download URLs (the file service)."""
        self.on_hard_delete: Callable[[], Awaitable[int]] | None = None
        """Called after a hard delete (the file service removes the deleted conversations' files)."""
        self._table: dict[str, Callable[[Request, Any], Awaitable[Reply]]] = {
            "conversation_start": self.conversation_start,
            "user_message": self.user_message,
            "metadata": self.set_metadata,
            "metadata_request": self.metadata_request,
            "action": self.action,
            "edit_message": self.edit_message,
            "delete_conversation": self.delete_conversation,
            "delete_user_conversations": self.delete_user_conversations,
            "get_user_conversations": self.get_user_conversations,
            "get_user_conversations_v2": self.get_user_conversations_v2,
            "conversation_transcript_request": self.transcript_request,
            "subscribe": self.subscribe,
        }

    async def handle(self, request: Request) -> Reply:
        self.metrics.client_event(request.envelope.event_type, request.via_websocket)
        return await self._table[request.envelope.event_type](request, request.envelope.payload)

    async def check(self, request: Request, conversation_id: str) -> None:
        """Like :meth:`conversation` when the record itself is not needed: a socket already bound to the
        conversation was checked when it was bound (and is unbound on delete), which saves a store read."""
        connection = request.connection
        if connection is not None and conversation_id in connection.conversations:
            return
        await self.conversation(request, conversation_id)

    def bind(self, conversation_id: str, connection: Connection | RemoteSocket, seq: int) -> None:
        """``seq``: the conversation's last ``seq`` as just read (the socket gets what follows it)."""
        if isinstance(connection, RemoteSocket):
            connection.bind(conversation_id, seq)  # over there, by the process that has the socket
        else:
            self.hub.bind(conversation_id, connection, seq)

    async def conversation(
        self, request: Request, conversation_id: str, *, bind: bool = True
    ) -> ConversationRecord:
        """The caller's live conversation, bound to the caller's socket; 404 for unknown, deleted or foreign ids."""
        record = await self.store.get_conversation(request.channel.id, conversation_id)
        if record is None:
            raise ConversationNotFound(conversation_id)
        if bind and request.connection is not None:
            self.bind(conversation_id, request.connection, record.last_seq)
        return record

    async def conversation_start(self, request: Request, payload: ConversationStart) -> Reply:
        wait = self.starts.take(request.channel.id)
        if wait:
            raise RateLimitError(
                429, f"too many conversations started; retry in {wait:.1f} s", retry_after=wait
            )
        check_size(self.max_metadata_bytes, "metadata", payload.public_metadata, payload.private_metadata)
        check_size(self.max_user_info_bytes, "userBasicInfo", payload.userBasicInfo)
        conversation_id = str(uuid.uuid4())
        await self.store.create_conversation(
            request.channel.id,
            conversation_id,
            payload.userId,
            payload.userBasicInfo,
            payload.public_metadata,
            payload.private_metadata,
        )
        self.metrics.conversation_started()
        started = {"conversation_id": conversation_id}
        if request.connection is not None:
            self.bind(conversation_id, request.connection, 0)
        return Reply(
            {
                "status": "success",
                "conversation_id": conversation_id,
                "event": {"event_type": "conversation_start_success", "event_payload": started},
            },
            socket_event=("conversation_start_success", started) if request.connection is not None else None,
        )

    async def user_message(self, request: Request, payload: UserMessage) -> Reply:
        await self.check(request, payload.conversation_id)
        sent_files = content_files(payload.content)
        if len(sent_files) > self.max_files_per_message:
            raise ProtocolError(
                400,
                f"a message may carry at most {self.max_files_per_message} files",
                payload.conversation_id,
            )
        event, created, record = await self.timeline.append_user_turn(
            request.channel.id, payload.conversation_id, payload.content, payload.client_msg_id
        )
        after = None
        if created:
            channel, conversation_id, text = request.channel, payload.conversation_id, user_input_of(payload)
            files = [agent_file(f) for f in sent_files]
            if files and self.fresh_file_urls is not None:
                files = await self.fresh_file_urls(channel.id, files)
            after = lambda: self.runner.schedule(
                channel, conversation_id, user_input=text, files=files, conversation=record
            )
        return Reply(
            {
                "status": "success",
                "conversation_id": payload.conversation_id,
                "message_id": event.message_id,
                "seq": event.seq,
                "client_msg_id": event.client_msg_id,
                "duplicate": not created,
            },
            # a retried send over the WebSocket: the original acknowledgement again, to the sender only
            ws_event=None if created else "user_message",
            ws_payload=None if created else event.wire_payload(),
            after=after,
        )

    async def set_metadata(self, request: Request, payload: SetMetadata) -> Reply:
        private = payload.metadata.get("private", {})
        if not isinstance(private, dict):
            raise ProtocolError(400, "invalid metadata: event_payload.metadata.private must be an object")
        public = {k: v for k, v in payload.metadata.items() if k != "private"}
        current = await self.conversation(request, payload.conversation_id)
        check_metadata_size(self.max_metadata_bytes, current, public, private)
        record = await self.store.update_metadata(
            request.channel.id, payload.conversation_id, public, private
        )
        if record is None:
            raise ConversationNotFound(payload.conversation_id)
        if public:
            await self._append(
                request,
                payload.conversation_id,
                NewEvent(
                    "conversation_update", {"type": "metadata_changed", "data": {"metadata": record.metadata}}
                ),
            )
        return Reply(
            {"status": "success", "conversation_id": payload.conversation_id, "metadata": record.metadata},
            replies.METADATA_UPDATE_SUCCESS,
            {"conversation_id": payload.conversation_id},
        )

    async def metadata_request(self, request: Request, payload: MetadataRequest) -> Reply:
        record = await self.conversation(request, payload.conversation_id)
        return Reply(
            {"metadata": record.metadata},
            replies.CONVERSATION_METADATA,
            {"conversation_id": payload.conversation_id, "content": record.metadata},
        )

    async def action(self, request: Request, payload: ClientAction) -> Reply:
        await self.check(request, payload.conversation_id)
        (event,) = await self._append(
            request,
            payload.conversation_id,
            NewEvent("user_action", {"id": payload.id, "data": payload.data}),
        )
        channel, conversation_id = request.channel, payload.conversation_id
        incoming = IncomingAction(id=payload.id, payload=payload.data)
        body = {"status": "success", "conversation_id": conversation_id, "seq": event.seq}
        return Reply(
            body,
            replies.ACTION_SUCCESS,
            dict(body),
            after=lambda: self.runner.schedule(channel, conversation_id, action=incoming),
        )

    async def edit_message(self, request: Request, payload: EditMessage) -> Reply:
        await self.conversation(request, payload.conversation_id)
        try:
            edited = await self.store.edit_message(
                request.channel.id,
                payload.conversation_id,
                payload.message_id,
                payload.content,
                senders=editable_by("client"),
            )
        except EditForbidden as exc:
            raise ProtocolError(403, str(exc), payload.conversation_id) from None
        if edited is None:
            raise MessageNotFound(payload.conversation_id)
        body = {
            "status": "success",
            "conversation_id": payload.conversation_id,
            "message_id": payload.message_id,
        }
        return Reply(body, replies.EDIT_MESSAGE_SUCCESS, dict(body))

    async def delete_conversation(self, request: Request, payload: DeleteConversation) -> Reply:
        conversation_id = payload.conversation_id
        await self.conversation(request, conversation_id, bind=False)
        async with self.timeline.lock(conversation_id):
            deleted = await self.store.delete_conversation(
                request.channel.id, conversation_id, payload.softdelete
            )
            if not deleted:
                raise ConversationNotFound(conversation_id)
            self.hub.broadcast(
                conversation_id,
                encode_frame(
                    "conversation_update",
                    {
                        "type": "deleted",
                        "conversation_id": conversation_id,
                        "data": {"soft": payload.softdelete},
                    },
                ),
            )
            self.hub.unbind_all(conversation_id)
        if not payload.softdelete and self.on_hard_delete is not None:
            await self.on_hard_delete()
        return Reply(
            {"status": "success", "conversation_id": conversation_id},
            replies.DELETE_CONVERSATION_SUCCESS,
            {"conversation_id": conversation_id},
        )

    async def delete_user_conversations(self, request: Request, payload: DeleteUserConversations) -> Reply:
        count = await self.store.delete_user_conversations(
            request.channel.id, payload.userId, payload.softdelete
        )
        if count and not payload.softdelete and self.on_hard_delete is not None:
            await self.on_hard_delete()
        body = {"status": "success", "userId": payload.userId, "deleted": count}
        return Reply(body, replies.DELETE_USER_CONVERSATIONS_SUCCESS, dict(body))

    async def get_user_conversations(self, request: Request, payload: GetUserConversations) -> Reply:
        page = await self.store.list_conversations(ListQuery([request.channel.id], payload.userId))
        conversations = [conversation_item(r, request.api_key) for r in page.items]
        return Reply(
            {"conversations": conversations}, replies.USER_CONVERSATIONS, {"conversations": conversations}
        )

    async def get_user_conversations_v2(self, request: Request, payload: GetUserConversationsV2) -> Reply:
        keys_by_channel = {request.channel.id: request.api_key}
        for key in payload.apiKeys:
            channel = await self.auth.channel(key)
            if channel is None:
                raise ProtocolError(403, "apiKeys: every key listed must be a valid key")
            keys_by_channel.setdefault(channel.id, key)
        limit = payload.pagination.limit
        page = await self.store.list_conversations(
            ListQuery(
                list(keys_by_channel),
                payload.userId,
                filter=payload.filter,
                search=payload.search,
                page=payload.pagination.page,
                limit=limit,
            )
        )
        total_pages = math.ceil(page.total / limit) if page.total else 0
        pagination = {
            "hasNextPage": page.page < total_pages,
            "hasPrevPage": page.page > 1,
            "page": page.page,
            "pageSize": limit,
            "total": page.total,
            "totalPages": total_pages,
        }
        conversations = [conversation_item(r, keys_by_channel[r.channel_id]) for r in page.items]
        body = {"conversations": conversations, "pagination": pagination}
        return Reply(body, replies.USER_CONVERSATIONS, dict(body))

    async def transcript(self, channel: Channel, conversation_id: str) -> list[dict[str, Any]]:
        if await self.store.get_conversation(channel.id, conversation_id) is None:
            raise ConversationNotFound(conversation_id)
        return [
            transcript_entry(e)
            for e in await self.store.messages(channel.id, conversation_id)
            if is_transcript_message(e)
        ]

    async def transcript_request(self, request: Request, payload: TranscriptRequest) -> Reply:
        await self.conversation(request, payload.conversation_id)
        transcript = await self.transcript(request.channel, payload.conversation_id)
        return Reply(
            {"conversation_id": payload.conversation_id, "transcript": transcript},
            replies.CONVERSATION_TRANSCRIPT,
            {"conversation_id": payload.conversation_id, "transcript": transcript},
        )

    async def subscribe(self, request: Request, payload: Subscribe) -> Reply:
        connection = request.connection
        if connection is None:
            raise ProtocolError(
                400, "subscribe needs the socket_id of a live WebSocket", payload.conversation_id
            )
        try:
            last_seq = await self.timeline.subscribe(connection, payload.conversation_id, payload.after_seq)
        except ConversationNotFound:
            raise NotReplayable(payload.conversation_id) from None
        body: dict[str, Any] = {
            "conversation_id": payload.conversation_id,
            "last_seq": last_seq,
            "recovered": True,
        }
        if payload.after_seq is not None and payload.after_seq > last_seq:
            body.update(
                recovered=False, reason="after_seq is ahead of the stored log; events may have been lost"
            )
        return Reply(body, replies.SUBSCRIBE_SUCCESS, dict(body))

    async def _append(self, request: Request, conversation_id: str, event: NewEvent) -> list[StoredEvent]:
        return await self.timeline.append(request.channel.id, conversation_id, [event])
