"""Typed results of client calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A message the platform accepted. ``message_id``/``seq`` are None against the cloud (it sends none)."""

    conversation_id: str
    client_msg_id: str
    message_id: str | None = None
    seq: int | None = None
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class PageInfo:
    """The v2 listing's ``pagination`` block."""

    has_next_page: bool
    has_prev_page: bool
    page: int
    page_size: int
    total: int
    total_pages: int

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PageInfo:
        return cls(
            has_next_page=bool(data.get("hasNextPage")),
            has_prev_page=bool(data.get("hasPrevPage")),
            page=int(data.get("page", 1)),
            page_size=int(data.get("pageSize", 0)),
            total=int(data.get("total", 0)),
            total_pages=int(data.get("totalPages", 0)),
        )


@dataclass(frozen=True, slots=True)
class ConversationUpdateInfo:
    """What ``on_conversation_update`` callbacks get (the npm client's ``{type, conversationId, data}``)."""

    type: str
    conversation_id: str | None
    data: Any


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """What ``on_error`` callbacks get (the npm client's ``{conversationId, errorCode, errorDesc}``)."""

    conversation_id: str | None
    error_code: int | str | None
    error_desc: str | None
