"""Platform -> client events (PROTOCOL.md section 5): typed models and the frame codec."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import ProtocolError

UPDATE_TYPES = ("livechat_started", "livechat_ended", "agent_changed", "title_changed", "metadata_changed", "deleted")


class PlatformEvent(BaseModel):
    """Base of every platform event. Reliability fields (ours) are optional: the cloud sends none."""

    model_config = ConfigDict(extra="allow", frozen=True)
    event_type: str
    conversation_id: str | None = None
    seq: int | None = None


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


PLATFORM_EVENT_MODELS: dict[str, type[PlatformEvent]] = {
    model.model_fields["event_type"].default: model
    for model in (
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
    )
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
