"""Which platform event answers which client event: the one reply-name table of both sides.

Over HTTP (npm 7.0.0) the reply is the POST's body; over the WebSocket (1.x) it is a frame with one of
these legacy names, carrying the request's ``request_id``. Events without an entry get no direct reply.
"""

from __future__ import annotations

from typing import Final

METADATA_UPDATE_SUCCESS: Final = "metadata_update_success"
CONVERSATION_METADATA: Final = "conversation_metadata"
DELETE_CONVERSATION_SUCCESS: Final = "delete_conversation_success"
DELETE_USER_CONVERSATIONS_SUCCESS: Final = "delete_user_conversations_success"
USER_CONVERSATIONS: Final = "user_conversations"
CONVERSATION_TRANSCRIPT: Final = "conversation_transcript"
SUBSCRIBE_SUCCESS: Final = "subscribe_success"
EDIT_MESSAGE_SUCCESS: Final = "edit_message_success"
ACTION_SUCCESS: Final = "action_success"

REPLIES: Final[dict[str, str]] = {
    "metadata": METADATA_UPDATE_SUCCESS,
    "metadata_request": CONVERSATION_METADATA,
    "delete_conversation": DELETE_CONVERSATION_SUCCESS,
    "delete_user_conversations": DELETE_USER_CONVERSATIONS_SUCCESS,
    "get_user_conversations": USER_CONVERSATIONS,
    "get_user_conversations_v2": USER_CONVERSATIONS,
    "conversation_transcript_request": CONVERSATION_TRANSCRIPT,
    "subscribe": SUBSCRIBE_SUCCESS,
    "edit_message": EDIT_MESSAGE_SUCCESS,
    "action": ACTION_SUCCESS,
}
"""Request event type → the legacy name of its direct reply."""

DIRECT_REPLIES: Final = frozenset({*REPLIES.values(), "general_error"})
"""Replies to one request: consumed by whoever waits for them, not routed to a conversation."""


def reply_to(event_type: str) -> str | None:
    """The reply name a request of ``event_type`` is answered with (None: no direct reply)."""
    return REPLIES.get(event_type)
