"""The agent side (PROTOCOL.md section 8): the format of PyPI ``captivate-ai-api`` 0.6.3.

The gateway sends a :class:`ChatRequest` to the AI agent and reads an :class:`AgentResponse`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class UserInfo(_Model):
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None


class ChannelMetadata(_Model):
    user: UserInfo | None = None
    channelMetadata: dict[str, Any] = Field(default_factory=dict)
    custom: dict[str, Any] = Field(default_factory=dict)
    private: dict[str, Any] = Field(default_factory=dict)
    conversationCreatedAt: str | None = None
    conversationUpdatedAt: str | None = None


class InternalMetadata(_Model):
    channelMetadata: ChannelMetadata = Field(default_factory=ChannelMetadata)


class AgentMetadata(_Model):
    internal: InternalMetadata = Field(default_factory=InternalMetadata)

    @property
    def channel(self) -> ChannelMetadata:
        return self.internal.channelMetadata


class IncomingAction(_Model):
    id: str
    payload: Any = None


class OutgoingAction(_Model):
    """An action the agent asks for; ``id`` may arrive as ``action`` and ``payload`` as ``data``."""

    id: str
    payload: Any = None
    data: Any = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = dict(value)
            if "id" not in value and "action" in value:
                value["id"] = value.pop("action")
        return value

    @property
    def body(self) -> Any:
        return self.payload if self.payload is not None else self.data


class ChatRequest(_Model):
    session_id: str
    user_input: str | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)
    incoming_action: list[IncomingAction] = Field(default_factory=list)
    hasLivechat: bool = False
    metadata: AgentMetadata = Field(default_factory=AgentMetadata)


class AgentResponse(_Model):
    response: list[Any] = Field(default_factory=list)
    session_id: str | None = None
    metadata: AgentMetadata | None = None
    outgoing_action: list[OutgoingAction] | None = None
    hasLivechat: bool = False
