from __future__ import annotations

import pytest

from captivate_chat_api.protocol import (
    BotMessage,
    ConversationUpdate,
    GeneralError,
    PlatformEvent,
    ProtocolError,
    TranscriptEntry,
    encode_frame,
    parse_frame,
)


def test_frames_round_trip_to_typed_events() -> None:
    frame = encode_frame("bot_message", {"conversation_id": "c", "content": {"type": "text", "text": "hi"}, "seq": 2})
    event = parse_frame(frame)
    assert isinstance(event, BotMessage)
    assert (event.conversation_id, event.seq, event.content) == ("c", 2, {"type": "text", "text": "hi"})


def test_cloud_frames_without_seq_parse() -> None:
    event = parse_frame('{"event": {"event_type": "conversation_update", "event_payload": {"type": "livechat_started", "conversation_id": "c", "data": {}}}}')
    assert isinstance(event, ConversationUpdate) and event.seq is None and event.type == "livechat_started"


def test_unknown_event_types_are_kept() -> None:
    event = parse_frame('{"event": {"event_type": "something_new", "event_payload": {"x": 1}}}')
    assert type(event) is PlatformEvent and event.event_type == "something_new"


def test_general_error_with_message_link() -> None:
    event = parse_frame(encode_frame("general_error", {"error_code": 413, "message_link": "http://x/m"}))
    assert isinstance(event, GeneralError) and event.error_code == 413 and event.message_link == "http://x/m"


def test_request_id_is_a_top_level_key() -> None:
    assert '"request_id":"r1"' in encode_frame("subscribe_success", {}, request_id="r1")


@pytest.mark.parametrize("raw", ["nope", "[]", '{"event": {}}', '{"event": {"event_type": "x", "event_payload": 3}}'])
def test_malformed_frames_raise(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(raw)


def test_transcript_entry_uses_from_on_the_wire() -> None:
    wire = {"message_id": "m", "seq": 1, "from": "bot", "content": {"type": "text", "text": "x"}, "created_at": "t"}
    entry = TranscriptEntry.from_wire(wire)
    assert entry.sender == "bot"
    assert entry.to_wire() == wire
