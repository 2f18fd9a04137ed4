"""Platform -> client events (PROTOCOL.md section 5): typed models and the frame codec."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import ProtocolError

UPDATE_TYPES = (
    "livechat_started",
    "livechat_ended",
    "agent_changed",
    "title_changed",
    "metadata_changed",
    "deleted",
)


class PlatformEvent(BaseModel):
    """Base of every platform event. Reliability fields (ours) are optional: the cloud sends none."""

    model_config = ConfigDict(extra="allow", frozen=True)
    event_type: str
    conversation_id: str | None = None
    seq: int | None = None

    def to_frame(self, request_id: str | None = None) -> str:
        """The frame of this event, with exactly the fields it was built with (in declaration order)."""
        return encode_frame(
            self.event_type,
            self.model_dump(exclude={"event_type"}, exclude_unset=True),
            request_id=request_id,
        )


class SocketConnected(PlatformEvent):
    event_type: Literal["socket_connected"] = "socket_connected"
    socket_id: str


class ConversationStartSuccess(PlatformEvent):
    event_type: Literal["conversation_start_success"] = "conversation_start_success"


class BotMessage(PlatformEvent):
    event_type: Literal["bot_message"] = "bot_message"
    content: Any = None
    message_id: str | None = None


class LivechatMessage(PlatformEvent):
    event_type: Literal["livechat_message"] = "livechat_message"
    content: Any = None
    message_id: str | None = None


class UserMessageEcho(PlatformEvent):
    """(ours) A stored user message, sent to every socket bound to the conversation (other tabs)."""

    event_type: Literal["user_message"] = "user_message"
    content: Any = None
    message_id: str | None = None
    client_msg_id: str | None = None


class UserActionEcho(PlatformEvent):
    """(ours) A stored client action, echoed like a user message."""

    event_type: Literal["user_action"] = "user_action"
    id: str
    data: Any = None


class Action(PlatformEvent):
    event_type: Literal["action"] = "action"
    actions: list[dict[str, Any]] = Field(default_factory=list)


class ConversationUpdate(PlatformEvent):
    event_type: Literal["conversation_update"] = "conversation_update"
    type: str
    data: Any = None


class GeneralError(PlatformEvent):
    event_type: Literal["general_error"] = "general_error"
    error_code: int | str | None = None
    error_desc: str | None = None
    message_link: str | None = None


class SubscribeSuccess(PlatformEvent):
    """(ours) Reply to ``subscribe``: replay is done (``recovered``) and live events follow."""

    event_type: Literal["subscribe_success"] = "subscribe_success"
    last_seq: int = 0
    recovered: bool = True
    reason: str | None = None


class BotMessageDelta(PlatformEvent):
    """(ours) A piece of a streamed reply, sent live and not stored (the full ``bot_message`` follows)."""

    event_type: Literal["bot_message_delta"] = "bot_message_delta"
    message_id: str | None = None
    delta: str = ""


# The direct replies of the WebSocket transport (legacy 1.x names; see replies.py) -------------------


class MetadataUpdateSuccess(PlatformEvent):
    event_type: Literal["metadata_update_success"] = "metadata_update_success"


class ConversationMetadata(PlatformEvent):
    event_type: Literal["conversation_metadata"] = "conversation_metadata"
    content: Any = None


class DeleteConversationSuccess(PlatformEvent):
    event_type: Literal["delete_conversation_success"] = "delete_conversation_success"


class DeleteUserConversationsSuccess(PlatformEvent):
    event_type: Literal["delete_user_conversations_success"] = "delete_user_conversations_success"
    userId: str | None = None  # the wire name
    deleted: int | None = None


class UserConversationsReply(PlatformEvent):
    event_type: Literal["user_conversations"] = "user_conversations"
    conversations: list[dict[str, Any]] = Field(default_factory=list)
    pagination: dict[str, Any] | None = None


class ConversationTranscript(PlatformEvent):
    event_type: Literal["conversation_transcript"] = "conversation_transcript"
    transcript: list[dict[str, Any]] = Field(default_factory=list)


class EditMessageSuccess(PlatformEvent):
    event_type: Literal["edit_message_success"] = "edit_message_success"
    message_id: str | None = None


class ActionSuccess(PlatformEvent):
    event_type: Literal["action_success"] = "action_success"


# The human agents' live feed (``/api/agent/ws``) --------------------------------------------------


class AgentConnected(PlatformEvent):
    """(ours) The first frame of an agent feed: its socket id, for binding HTTP calls to it."""

    event_type: Literal["agent_connected"] = "agent_connected"
    socket_id: str
    channel_id: str | None = None


class HandoffUpdate(PlatformEvent):
    """(ours) A conversation's hand-off state changed (the human agents' queue)."""

    event_type: Literal["handoff_update"] = "handoff_update"
    state: str
    human_agent: str | None = None
    """The owning human agent's display name."""
    human_agent_id: str | None = None
    """The owning human agent's id (its token's)."""


LEGACY_REPLY_MODELS: tuple[type[PlatformEvent], ...] = (
    MetadataUpdateSuccess,
    ConversationMetadata,
    DeleteConversationSuccess,
    DeleteUserConversationsSuccess,
    UserConversationsReply,
    ConversationTranscript,
    EditMessageSuccess,
    ActionSuccess,
)

_MODELS: tuple[type[PlatformEvent], ...] = (
    SocketConnected,
    ConversationStartSuccess,
    BotMessage,
    LivechatMessage,
    UserMessageEcho,
    UserActionEcho,
    Action,
    ConversationUpdate,
    GeneralError,
    SubscribeSuccess,
    BotMessageDelta,
    AgentConnected,
    HandoffUpdate,
    *LEGACY_REPLY_MODELS,
)
PLATFORM_EVENT_MODELS: dict[str, type[PlatformEvent]] = {
    model.model_fields["event_type"].default: model for model in _MODELS
}


def make_frame(event_type: str, payload: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """``{"event": {"event_type", "event_payload"}}`` plus optional top-level keys (e.g. ``request_id``)."""
    frame: dict[str, Any] = {"event": {"event_type": event_type, "event_payload": payload}}
    frame.update({k: v for k, v in extra.items() if v is not None})
    return frame


def encode_frame(event_type: str, payload: dict[str, Any], **extra: Any) -> str:
    return json.dumps(make_frame(event_type, payload, **extra), separators=(",", ":"), ensure_ascii=False)


def parse_frame(raw: str | bytes) -> PlatformEvent:
    """Decode one platform frame into its typed event; unknown event types become :class:`PlatformEvent`."""
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ProtocolError(400, f"frame is not JSON: {exc}") from None
    event = data.get("event") if isinstance(data, dict) else None
    if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
        raise ProtocolError(400, "frame has no event.event_type")
    payload = event.get("event_payload") or {}
    if not isinstance(payload, dict):
        raise ProtocolError(400, "frame event_payload is not an object")
    model = PLATFORM_EVENT_MODELS.get(event["event_type"], PlatformEvent)
    try:
        return model.model_validate({**payload, "event_type": event["event_type"]})
    except ValueError as exc:
        raise ProtocolError(400, f"malformed {event['event_type']}: {exc}") from None
