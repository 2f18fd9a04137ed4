"""Row -> record mappers shared by the SQLite and PostgreSQL stores (both rows index by column name)."""

from __future__ import annotations

from typing import Any

import orjson

from ..fastjson import dumps
from ..fastjson import loads as _loads
from .base import (
    AgentTokenInfo,
    ApiKeyInfo,
    Channel,
    ConversationRecord,
    StoredEvent,
    new_conversation_record,
    new_stored_event,
)

Row = Any  # sqlite3.Row or asyncpg.Record

__all__ = [
    "CONVERSATION_COLUMNS",
    "EVENT_COLUMNS",
    "channel_row",
    "conversation_of",
    "conversation_row",
    "dumps",
    "event_of",
    "event_row",
    "key_row",
    "loads",
    "token_row",
]


def loads(text: str | bytes) -> Any:
    """A stored JSON column (:func:`..fastjson.loads`); the common short ones (``{}``) straight to orjson:
    too short to hold the 19-digit numbers that need the stdlib."""
    return orjson.loads(text) if len(text) < 19 else _loads(text)


def conversation_row(row: Row) -> ConversationRecord:
    return new_conversation_record(
        id=row["id"],
        channel_id=row["channel_id"],
        user_id=row["user_id"],
        user_basic_info=loads(row["user_basic_info"]),
        metadata=loads(row["metadata"]),
        private_metadata=loads(row["private_metadata"]),
        last_seq=row["last_seq"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        handoff=row["handoff"],
        human_agent=row["human_agent"],
        agent=row["agent"],
        has_livechat=bool(row["has_livechat"]),
    )


CONVERSATION_COLUMNS = (
    "id, channel_id, user_id, user_basic_info, metadata, private_metadata, last_seq, created_at, updated_at,"
    " deleted_at, handoff, human_agent, agent, has_livechat"
)
"""The conversation's columns in :func:`conversation_of`'s order (for a statement that names them)."""


def conversation_of(row: Row) -> ConversationRecord:
    """:func:`conversation_row` for a row of :data:`CONVERSATION_COLUMNS`, by position (a sqlite3.Row looks
    a name up by comparing it with every column's: three times slower on the hot path)."""
    return new_conversation_record(
        row[0],
        row[1],
        row[2],
        loads(row[3]),
        loads(row[4]),
        loads(row[5]),
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12],
        bool(row[13]),
    )


def channel_row(row: Row) -> Channel:
    return Channel(
        id=row["id"],
        name=row["name"],
        agent=row["agent"],
        agents=loads(row["agents"]),
        webhook_secret=row["webhook_secret"],
    )


def token_row(row: Row) -> AgentTokenInfo:
    return AgentTokenInfo(
        id=row["id"],
        channel_id=row["channel_id"],
        prefix=row["prefix"],
        role=row["role"],
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def event_row(row: Row) -> StoredEvent:
    return new_stored_event(
        conversation_id=row["conversation_id"],
        seq=row["seq"],
        event_type=row["event_type"],
        payload=loads(row["payload"]),
        created_at=row["created_at"],
        sender=row["sender"],
        message_id=row["message_id"],
        client_msg_id=row["client_msg_id"],
        edited_at=row["edited_at"],
    )


EVENT_COLUMNS = (
    "conversation_id, seq, event_type, payload, created_at, sender, message_id, client_msg_id, edited_at"
)
"""The event's columns in :func:`event_of`'s order (for a statement that names them)."""


def event_of(row: Row) -> StoredEvent:
    """:func:`event_row` for a row of :data:`EVENT_COLUMNS`, by position (a replay maps up to 500 rows)."""
    return new_stored_event(row[0], row[1], row[2], loads(row[3]), row[4], row[5], row[6], row[7], row[8])


def key_row(row: Row) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=row["id"],
        channel_id=row["channel_id"],
        prefix=row["prefix"],
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
