"""The one exception tree: the gateway's facts are ProtocolErrors with their HTTP-like code."""

from __future__ import annotations

import pytest

from captivate_chat_api import errors
from captivate_chat_api.server.agents import AgentError as ServerAgentError
from captivate_chat_api.server.handoff import HandoffConflict as ServerHandoffConflict


def test_a_missing_conversation_is_a_404_and_still_a_lookup_error() -> None:
    exc = errors.ConversationNotFound("c1")
    assert isinstance(exc, errors.NotFoundError) and isinstance(exc, LookupError)
    assert (exc.error_code, exc.error_desc, exc.conversation_id) == (404, "conversation not found", "c1")
    assert exc.to_body() == {"error_code": 404, "error_desc": "conversation not found"}


def test_a_handoff_conflict_is_a_409_protocol_error() -> None:
    exc = errors.HandoffConflict("take", "human", "c1")
    assert isinstance(exc, errors.ProtocolError)
    assert (exc.error_code, exc.name, exc.state) == (409, "take", "human")
    assert str(exc) == "cannot take: the conversation is human"


def test_the_server_uses_the_one_tree() -> None:
    assert ServerHandoffConflict is errors.HandoffConflict
    assert ServerAgentError is errors.AgentError
    with pytest.raises(errors.CaptivateChatError):
        raise errors.AgentError("down", 503)
