"""Client -> platform events (PROTOCOL.md section 4): one typed payload model per ``event_type``."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator

from .content import Content, normalize_content

ConversationId = StrictStr


class _Payload(BaseModel):
    # Unknown keys are tolerated (clients add fields over time); known keys are strictly typed.
    model_config = ConfigDict(extra="allow", frozen=True)


class _ConversationPayload(_Payload):
    conversation_id: ConversationId = Field(min_length=1, max_length=200)


class ConversationStart(_Payload):
    userId: StrictStr = Field(min_length=1, max_length=500)
    userBasicInfo: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def public_metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.metadata.items() if k != "private"}

    @property
    def private_metadata(self) -> dict[str, Any]:
        private = self.metadata.get("private")
        return dict(private) if isinstance(private, dict) else {}


class UserMessage(_ConversationPayload):
    type: StrictStr = "message_create"
    client_msg_id: StrictStr | None = Field(default=None, max_length=200)
    content: Content

    _normalize = field_validator("content", mode="before")(normalize_content)

    @property
    def text(self) -> str | None:
        """The text of a plain text message, else None."""
        if isinstance(self.content, dict) and self.content.get("type") == "text":
            text = self.content.get("text")
            return text if isinstance(text, str) else None
        return None


class SetMetadata(_ConversationPayload):
    metadata: dict[str, Any]
    client_msg_id: StrictStr | None = None


class MetadataRequest(_ConversationPayload):
    pass


class ClientAction(_ConversationPayload):
    type: StrictStr = "normal"
    id: StrictStr = Field(min_length=1, max_length=200)
    data: Any = Field(default_factory=dict)


class EditMessage(_ConversationPayload):
    type: StrictStr = "message_create"
    client_msg_id: StrictStr | None = None
    message_id: StrictStr = Field(min_length=1, max_length=200)
    content: Content

    _normalize = field_validator("content", mode="before")(normalize_content)


class DeleteConversation(_ConversationPayload):
    softdelete: StrictBool = True


class DeleteUserConversations(_Payload):
    userId: StrictStr = Field(min_length=1, max_length=500)
    softdelete: StrictBool = True


class GetUserConversations(_Payload):
    userId: StrictStr = Field(min_length=1, max_length=500)


def _positive_int(value: Any, name: str, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive integer")  # noqa: TRY004 (pydantic reports ValueError only)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer (a number or a numeric string)")
    return value


class Pagination(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    page: int = 1
    limit: int = 20

    @field_validator("page", mode="before")
    @classmethod
    def _page(cls, value: Any) -> int:
        return _positive_int(value, "page", 1)

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> int:
        limit = _positive_int(value, "limit", 20)
        if limit > 100:
            raise ValueError("limit must be at most 100")
        return limit


class GetUserConversationsV2(_Payload):
    userId: StrictStr = Field(min_length=1, max_length=500)
    filter: dict[str, Any] = Field(default_factory=dict)
    search: dict[str, Any] = Field(default_factory=dict)
    pagination: Pagination = Field(default_factory=Pagination)
    apiKeys: list[StrictStr] = Field(default_factory=list, max_length=50)


class TranscriptRequest(_ConversationPayload):
    pass


class Subscribe(_ConversationPayload):
    """(ours) Resume: replay every event with ``seq > after_seq``, then live; without ``after_seq``, live only."""

    after_seq: StrictInt | None = Field(default=None, ge=0)


CLIENT_EVENT_MODELS: dict[str, type[_Payload]] = {
    "conversation_start": ConversationStart,
    "user_message": UserMessage,
    "metadata": SetMetadata,
    "metadata_request": MetadataRequest,
    "action": ClientAction,
    "edit_message": EditMessage,
    "delete_conversation": DeleteConversation,
    "delete_user_conversations": DeleteUserConversations,
    "get_user_conversations": GetUserConversations,
    "get_user_conversations_v2": GetUserConversationsV2,
    "conversation_transcript_request": TranscriptRequest,
    "subscribe": Subscribe,
}
