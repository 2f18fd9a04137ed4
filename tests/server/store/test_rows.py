"""The SQLite store maps its hot statements' rows by position (rows.conversation_of): the same record as by
column name (rows.conversation_row)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
