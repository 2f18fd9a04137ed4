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
    frame = encode_frame(
        "bot_message", {"conversation_id": "c", "content": {"type": "text", "text": "hi"}, "seq": 2}
    )
    event = parse_frame(frame)
    assert isinstance(event, BotMessage)
    assert (event.conversation_id, event.seq, event.content) == ("c", 2, {"type": "text", "text": "hi"})


def test_cloud_frames_without_seq_parse() -> None:
    event = parse_frame(
        '{"event": {"event_type": "conversation_update", "event_payload": {"type": "livechat_started", "conversation_id": "c", "data": {}}}}'
    )
    assert isinstance(event, ConversationUpdate) and event.seq is None and event.type == "livechat_started"


def test_unknown_event_types_are_kept() -> None:
    event = parse_frame('{"event": {"event_type": "something_new", "event_payload": {"x": 1}}}')
    assert type(event) is PlatformEvent and event.event_type == "something_new"


def test_general_error_with_message_link() -> None:
    event = parse_frame(encode_frame("general_error", {"error_code": 413, "message_link": "http://x/m"}))
    assert isinstance(event, GeneralError) and event.error_code == 413 and event.message_link == "http://x/m"


def test_request_id_is_a_top_level_key() -> None:
    assert '"request_id":"r1"' in encode_frame("subscribe_success", {}, request_id="r1")


@pytest.mark.parametrize(
    "raw", ["nope", "[]", '{"event": {}}', '{"event": {"event_type": "x", "event_payload": 3}}']
)
def test_malformed_frames_raise(raw: str) -> None:
    with pytest.raises(ProtocolError):
        parse_frame(raw)


def test_transcript_entry_uses_from_on_the_wire() -> None:
    wire = {
        "message_id": "m",
        "seq": 1,
        "from": "bot",
        "content": {"type": "text", "text": "x"},
        "created_at": "t",
    }
    entry = TranscriptEntry.from_wire(wire)
    assert entry.sender == "bot"
    assert entry.to_wire() == wire


def test_frames_the_gateway_builds_from_models_keep_their_wire_bytes() -> None:
    from captivate_chat_api.protocol import AgentConnected, BotMessageDelta, HandoffUpdate

    delta = BotMessageDelta(conversation_id="c", message_id="m", delta="Hel")
    assert delta.to_frame() == (
        '{"event":{"event_type":"bot_message_delta","event_payload":{"conversation_id":"c","message_id":"m","delta":"Hel"}}}'
    )
    connected = AgentConnected(socket_id="s", channel_id="ch")
    assert (
        connected.to_frame()
        == '{"event":{"event_type":"agent_connected","event_payload":{"socket_id":"s","channel_id":"ch"}}}'
    )
    update = HandoffUpdate(conversation_id="c", state="human", human_agent=None)
    assert update.to_frame(request_id="r") == (
        '{"event":{"event_type":"handoff_update","event_payload":{"conversation_id":"c","state":"human",'
        '"human_agent":null}},"request_id":"r"}'
    )


def test_every_reply_name_has_a_model() -> None:
    from captivate_chat_api.protocol import LEGACY_REPLY_MODELS, PLATFORM_EVENT_MODELS
    from captivate_chat_api.protocol.replies import REPLIES

    assert len(LEGACY_REPLY_MODELS) == 8
    for name in REPLIES.values():
        assert name in PLATFORM_EVENT_MODELS, name
        assert parse_frame(make_frame_text(name)).event_type == name


def make_frame_text(event_type: str) -> str:
    import json

    return json.dumps({"event": {"event_type": event_type, "event_payload": {"conversation_id": "c"}}})


def test_transcript_entries_keep_the_wire_order() -> None:
    entry = TranscriptEntry(message_id="m", seq=1, sender="bot", content=None, created_at="t")
    assert list(entry.to_wire()) == ["message_id", "seq", "from", "content", "created_at"]
