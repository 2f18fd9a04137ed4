"""The SQLite store maps its hot statements' rows by position (rows.conversation_of): the same record as by
column name (rows.conversation_row)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from captivate_chat_api.server.store import NewEvent
from captivate_chat_api.server.store.rows import (
    CONVERSATION_COLUMNS,
    EVENT_COLUMNS,
    conversation_of,
    conversation_row,
    event_of,
    event_row,
)
from captivate_chat_api.server.store.sqlite import SQLiteStore


async def test_by_position_is_by_name(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "r.db"))
    await store.open()
    channel = await store.create_channel_with_key("c", "h" * 64, "p")
    await store.create_conversation(
        channel.id, "c1", "u", {"name": "Ann"}, {"k": [1, 2]}, {"n": 12345678901234567890}
    )
    await store.transition(
        channel.id, "c1", allowed_from=frozenset({"ai"}), handoff="human", human_agent="h1", events=[]
    )
    await store.append_user_turn(
        channel.id,
        "c1",
        NewEvent("user_message", {"content": {"n": 12345678901234567890}}, "user", "m1", "k1"),
    )
    await store.edit_message(channel.id, "c1", "m1", {"n": 1})
    await store.append_events(channel.id, "c1", [NewEvent("general_error", {"error_code": 500})])
    await store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.row_factory = sqlite3.Row
    by_name = conversation_row(conn.execute("SELECT * FROM conversations").fetchone())
    by_position = conversation_of(
        conn.execute(f"SELECT {CONVERSATION_COLUMNS} FROM conversations").fetchone()
    )
    assert by_position == by_name
    assert by_position.private_metadata == {"n": 12345678901234567890} and by_position.has_livechat is True
    events_by_name = [event_row(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")]
    events_by_position = [
        event_of(r) for r in conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")
    ]
    assert events_by_position == events_by_name and len(events_by_name) == 2
    assert events_by_name[0].edited_at is not None and events_by_name[0].client_msg_id == "k1"
    assert (events_by_name[1].sender, events_by_name[1].payload) == (None, {"error_code": 500})


def test_quick_constructors_build_equal_frozen_records() -> None:
    """base.quick: the faster constructors give an instance of the record's own class, equal to the one
    its __init__ builds, with the same defaults, and as frozen."""
    import dataclasses

    import pytest

    from captivate_chat_api.server.store.base import (
        ConversationRecord,
        NewEvent,
        StoredEvent,
        new_conversation_record,
        new_event,
        new_stored_event,
        quick,
    )

    values: dict[str, Any] = {
        "id": "c1",
        "channel_id": "ch",
        "user_id": "u",
        "user_basic_info": {"a": 1},
        "metadata": {},
        "private_metadata": {"p": 2},
        "last_seq": 3,
        "created_at": "t0",
        "updated_at": "t1",
    }
    record = new_conversation_record(**values, handoff="human")
    assert type(record) is ConversationRecord
    assert record == ConversationRecord(**values, handoff="human")
    assert (record.deleted_at, record.agent, record.has_livechat) == (None, None, False)
    event = new_stored_event("c1", 4, "bot_message", {"content": {}}, "t2", "bot", message_id="m")
    assert type(event) is StoredEvent
    assert event == StoredEvent("c1", 4, "bot_message", {"content": {}}, "t2", "bot", message_id="m")
    assert event.wire_payload()["message_id"] == "m" and event.edited_at is None
    new = new_event(event_type="user_message", payload={}, sender="user", client_msg_id="x")
    assert type(new) is NewEvent and new == NewEvent("user_message", {}, "user", None, "x")
    for built in (record, event, new):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(built, dataclasses.fields(built)[1].name, {})
    assert dataclasses.replace(record, last_seq=4).last_seq == 4
    with pytest.raises(TypeError):
        new_event("x")  # type: ignore[call-arg]  # a required field missing: as the class's own __init__
    with pytest.raises(AssertionError):
        quick(dataclasses.make_dataclass("Mutable", [("a", int)], slots=True))
