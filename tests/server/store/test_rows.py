"""The SQLite store maps its hot statements' rows by position (rows.conversation_of): the same record as by
column name (rows.conversation_row)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from captivate_chat_api.server.store.rows import CONVERSATION_COLUMNS, conversation_of, conversation_row
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
    await store.close()
    conn = sqlite3.connect(tmp_path / "r.db")
    conn.row_factory = sqlite3.Row
    by_name = conversation_row(conn.execute("SELECT * FROM conversations").fetchone())
    by_position = conversation_of(
        conn.execute(f"SELECT {CONVERSATION_COLUMNS} FROM conversations").fetchone()
    )
    assert by_position == by_name
    assert by_position.private_metadata == {"n": 12345678901234567890} and by_position.has_livechat is True


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
