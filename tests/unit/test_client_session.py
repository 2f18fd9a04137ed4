"""The client's sans-I/O session: raw frames in, decisions out (no event loop, no socket)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from captivate_chat_api.client.session import (
    Closed,
    Deliver,
    FetchLarge,
    Resubscribe,
    Session,
    Settle,
    Started,
    message_key,
    request_id_of,
)
from captivate_chat_api.errors import NotFoundError, ProtocolError, RateLimitError
from captivate_chat_api.protocol import BotMessage, ConversationUpdate, UserMessageEcho
from captivate_chat_api.protocol.replies import DIRECT_REPLIES, REPLIES, reply_to


def frame(event_type: str, request_id: str | None = None, **payload: Any) -> str:
    data: dict[str, Any] = {"event": {"event_type": event_type, "event_payload": payload}}
    if request_id is not None:
        data["request_id"] = request_id
    return json.dumps(data)


def test_an_event_of_a_tracked_conversation_is_delivered_and_moves_its_cursor() -> None:
    session = Session()
    cursor = session.track("c1")
    (decision,) = session.receive(frame("bot_message", conversation_id="c1", seq=1, content="hi"))
    assert isinstance(decision, Deliver) and decision.conversation_id == "c1"
    assert isinstance(decision.event, BotMessage) and decision.event.content == "hi"
    assert cursor.last_seq == 1


def test_events_of_unknown_conversations_are_dropped() -> None:
    session = Session()
    session.track("c1")
    assert session.receive(frame("bot_message", conversation_id="other", seq=1)) == []


def test_a_seq_already_seen_is_a_duplicate() -> None:
    session = Session()
    session.track("c1")
    assert len(session.receive(frame("bot_message", conversation_id="c1", seq=1))) == 1
    assert session.receive(frame("bot_message", conversation_id="c1", seq=1)) == []
    assert session.receive(frame("bot_message", conversation_id="c1", seq=0)) == []


def test_a_gap_is_only_a_gap_once_synced() -> None:
    session = Session()
    cursor = session.track("c1")
    # not synced yet (a replay may start anywhere): a jump is taken as it is
    assert isinstance(session.receive(frame("bot_message", conversation_id="c1", seq=5))[0], Deliver)
    session.mark_synced("c1")
    assert session.receive(frame("bot_message", conversation_id="c1", seq=7)) == [Resubscribe("c1")]
    assert cursor.last_seq == 5  # the event after the gap is not taken: the replay brings it in order
    assert isinstance(session.receive(frame("bot_message", conversation_id="c1", seq=6))[0], Deliver)


def test_events_without_seq_are_always_delivered() -> None:
    session = Session()
    session.track("c1")
    session.mark_synced("c1")
    for _ in range(2):
        assert isinstance(session.receive(frame("bot_message", conversation_id="c1"))[0], Deliver)


def test_a_reply_settles_its_waiter_and_is_not_routed() -> None:
    session = Session()
    session.track("c1")
    session.expect("r1")
    decisions = session.receive(frame("conversation_metadata", "r1", conversation_id="c1", content={"a": 1}))
    assert decisions == [Settle("r1", {"conversation_id": "c1", "seq": None, "content": {"a": 1}})]
    assert "r1" not in session.pending
    # the same reply again (nobody waits any more) is an ordinary event of the conversation
    assert isinstance(session.receive(frame("conversation_metadata", "r1", conversation_id="c1"))[0], Deliver)


def test_an_error_reply_carries_the_typed_error() -> None:
    session = Session()
    session.expect("r1")
    (decision,) = session.receive(
        frame("general_error", "r1", conversation_id="c1", error_code=429, error_desc="slow", retry_after=0.5)
    )
    assert isinstance(decision, Settle) and isinstance(decision.error, RateLimitError)
    assert decision.error.retry_after == 0.5 and decision.error.conversation_id == "c1"
    session.expect("r2")
    (decision,) = session.receive(frame("general_error", "r2", error_code="404", error_desc="gone"))
    assert isinstance(decision, Settle) and isinstance(decision.error, NotFoundError)


def test_a_message_is_acknowledged_by_its_echo_which_is_still_delivered() -> None:
    session = Session()
    session.track("c1")
    key = message_key("m1")
    session.expect(key)
    raw = frame(
        "user_message",
        key,
        conversation_id="c1",
        seq=1,
        client_msg_id="m1",
        content={"type": "text", "text": "x"},
    )
    settle, deliver = session.receive(raw)
    assert isinstance(settle, Settle) and settle.key == key and settle.payload is not None
    assert settle.payload["client_msg_id"] == "m1"
    assert isinstance(deliver, Deliver) and isinstance(deliver.event, UserMessageEcho)


def test_a_start_goes_to_its_request_or_to_the_oldest_waiting_start() -> None:
    session = Session()
    session.expect("r1")
    assert session.receive(frame("conversation_start_success", "r1", conversation_id="c1")) == [
        Settle("r1", {"conversation_id": "c1"})
    ]
    assert session.receive(frame("conversation_start_success", conversation_id="c2")) == [Started("c2")]
    session.track("c3")  # already known: a repeated start is ignored
    assert session.receive(frame("conversation_start_success", conversation_id="c3")) == []


def test_a_deleted_conversation_is_delivered_its_update_then_closed_and_forgotten() -> None:
    session = Session()
    session.track("c1")
    deliver, closed = session.receive(
        frame("conversation_update", conversation_id="c1", seq=1, type="deleted")
    )
    assert isinstance(deliver, Deliver) and isinstance(deliver.event, ConversationUpdate)
    assert closed == Closed("c1")
    assert "c1" not in session.cursors
    assert session.receive(frame("bot_message", conversation_id="c1", seq=2)) == []


def test_a_too_large_message_is_fetched_then_admitted_under_the_seq_rule() -> None:
    session = Session()
    cursor = session.track("c1")
    (fetch,) = session.receive(
        frame("general_error", conversation_id="c1", seq=1, error_code=413, message_link="http://x/large/1")
    )
    assert isinstance(fetch, FetchLarge) and fetch.event.message_link == "http://x/large/1"
    assert cursor.last_seq == 0  # not counted until the fetched message is admitted
    fetched = BotMessage(conversation_id="c1", seq=1, content="big")
    assert session.admit(fetched) == [Deliver("c1", fetched)]
    assert session.admit(fetched) == []


def test_malformed_frames_raise_protocol_errors() -> None:
    session = Session()
    for raw in ("not json", "[]", '{"event": {}}', '{"event": {"event_type": "x", "event_payload": 3}}'):
        with pytest.raises(ProtocolError):
            session.receive(raw)


def test_request_ids_are_read_only_from_the_top_level() -> None:
    assert request_id_of(frame("x", "abc")) == "abc"
    assert request_id_of(b'{"request_id": "b"}') == "b"
    assert request_id_of(frame("x", conversation_id="c")) is None
    assert request_id_of('{"request_id": 5}') is None


def test_the_reply_table_names_each_reply_once() -> None:
    assert reply_to("subscribe") == "subscribe_success"
    assert reply_to("user_message") is None and reply_to("conversation_start") is None
    assert DIRECT_REPLIES == {*REPLIES.values(), "general_error"}
