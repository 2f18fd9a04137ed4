"""The store contract, on a real SQLite file: seq without gaps, durability across reopen, tenancy."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from captivate_chat_api.errors import ConversationNotFound
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import ListQuery, NewEvent, Store, store_from_url
from captivate_chat_api.server.store.migrate import load


async def channel(store: Store, name: str = "c") -> str:
    key = generate_key()
    return (await store.create_channel_with_key(name, hash_key(key), key[:8])).id


async def conversation(store: Store, channel_id: str, cid: str, user: str = "u1", **metadata: object) -> str:
    await store.create_conversation(channel_id, cid, user, {"name": "J"}, dict(metadata), {"secret": 1})
    return cid


def message(text: str, client_msg_id: str | None = None) -> NewEvent:
    return NewEvent(
        "user_message", {"content": {"type": "text", "text": text}}, "user", f"m-{text}", client_msg_id
    )


async def test_seq_is_consecutive_under_concurrent_appends(store: Store) -> None:
    ch = await channel(store)
    cid = await conversation(store, ch, "c1")
    results = await asyncio.gather(*(store.append_events(ch, cid, [message(str(i))]) for i in range(60)))
    seqs = sorted(event.seq for batch in results for event in batch)
    assert seqs == list(range(1, 61))
    after = await store.events_after(ch, cid, 0)
    assert [e.seq for e in after] == list(range(1, 61))
    assert (await store.get_conversation(ch, cid)).last_seq == 60  # type: ignore[union-attr]


async def test_batch_append_is_ordered_and_atomic(store: Store) -> None:
    ch = await channel(store)
    cid = await conversation(store, ch, "c1")
    stored = await store.append_events(ch, cid, [message("a"), message("b"), message("c")])
    assert [e.seq for e in stored] == [1, 2, 3]
    with pytest.raises(TypeError):  # the second event cannot be stored: the first must not be either
        await store.append_events(ch, cid, [message("d"), NewEvent("x", {"bad": object()})])  # type: ignore[dict-item]
    assert [e.seq for e in await store.events_after(ch, cid, 0)] == [1, 2, 3]


async def test_data_survives_reopen(database_url: str) -> None:
    first = store_from_url(database_url)
    await first.open()
    ch = await channel(first)
    cid = await conversation(first, ch, "c1", plan="pro")
    await first.append_events(ch, cid, [message("kept", "k1")])
    await first.close()
    second = store_from_url(database_url)
    await second.open()
    try:
        record = await second.get_conversation(ch, cid)
        assert record is not None and record.metadata == {"plan": "pro"} and record.last_seq == 1
        (event,) = await second.messages(ch, cid)
        assert event.payload["content"]["text"] == "kept" and event.client_msg_id == "k1"
        again, created = await second.append_user_message(ch, cid, message("kept", "k1"))
        assert (again.seq, created) == (1, False)
    finally:
        await second.close()


async def test_conversations_are_invisible_to_other_channels(store: Store) -> None:
    a, b = await channel(store, "a"), await channel(store, "b")
    cid = await conversation(store, a, "c1")
    assert await store.get_conversation(b, cid) is None
    assert await store.update_metadata(b, cid, {"x": 1}, {}) is None
    assert await store.delete_conversation(b, cid, soft=False) is False
    with pytest.raises(ConversationNotFound):
        await store.append_events(b, cid, [message("intrusion")])
    assert (await store.list_conversations(ListQuery([b], "u1"))).total == 0
    assert await store.get_conversation(a, cid) is not None
    # the event log too: every method takes the channel, and another channel's reads find nothing
    (stored,) = await store.append_events(a, cid, [message("kept")])
    assert await store.events_after(b, cid, 0) == [] and await store.messages(b, cid) == []
    assert await store.edit_message(b, cid, stored.message_id or "", {"type": "text", "text": "x"}) is None
    assert [e.payload for e in await store.messages(a, cid)] == [stored.payload]
    assert [e.seq for e in await store.events_after(a, cid, 0)] == [1]


async def test_metadata_patches_merge_and_private_stays_apart(store: Store) -> None:
    ch = await channel(store)
    cid = await conversation(store, ch, "c1", plan="free", lang="en")
    record = await store.update_metadata(ch, cid, {"plan": "pro"}, {"crm": 7})
    assert record is not None
    assert record.metadata == {"plan": "pro", "lang": "en"}
    assert record.private_metadata == {"secret": 1, "crm": 7}


async def test_soft_and_hard_delete(store: Store) -> None:
    ch = await channel(store)
    soft = await conversation(store, ch, "soft")
    hard = await conversation(store, ch, "hard")
    await store.append_events(ch, hard, [message("x")])
    assert await store.delete_conversation(ch, soft, soft=True)
    assert await store.delete_conversation(ch, hard, soft=False)
    assert await store.get_conversation(ch, soft) is None
    assert await store.get_conversation(ch, hard) is None
    assert await store.events_after(ch, hard, 0) == []  # hard delete removes the log too
    assert not await store.delete_conversation(ch, soft, soft=True)  # already deleted


async def test_delete_user_conversations_counts_only_that_user(store: Store) -> None:
    ch = await channel(store)
    for i in range(3):
        await conversation(store, ch, f"a{i}", user="alice")
    await conversation(store, ch, "b0", user="bob")
    assert await store.delete_user_conversations(ch, "alice", soft=True) == 3
    assert (await store.list_conversations(ListQuery([ch], "alice"))).total == 0
    assert (await store.list_conversations(ListQuery([ch], "bob"))).total == 1
    assert await store.delete_user_conversations(ch, "bob", soft=False) == 1


async def test_listing_filters_searches_and_pages(store: Store) -> None:
    ch = await channel(store)
    for i in range(5):
        await conversation(
            store, ch, f"c{i}", plan="pro" if i % 2 == 0 else "free", topic=f"order #{i} refund"
        )
    pro = await store.list_conversations(ListQuery([ch], "u1", filter={"plan": "pro"}))
    assert sorted(c.id for c in pro.items) == ["c0", "c2", "c4"]
    found = await store.list_conversations(ListQuery([ch], "u1", search={"topic": "#3 REFUND"}))
    assert [c.id for c in found.items] == ["c3"]
    page2 = await store.list_conversations(ListQuery([ch], "u1", page=2, limit=2))
    assert (page2.total, page2.page, page2.page_size, len(page2.items)) == (5, 2, 2, 2)
    page3 = await store.list_conversations(ListQuery([ch], "u1", page=3, limit=2))
    assert len(page3.items) == 1
    everything = [
        c.id
        for p in (1, 2, 3)
        for c in (await store.list_conversations(ListQuery([ch], "u1", page=p, limit=2))).items
    ]
    assert sorted(everything) == [f"c{i}" for i in range(5)]


async def test_edit_message_keeps_seq_and_marks_edited(store: Store) -> None:
    ch = await channel(store)
    cid = await conversation(store, ch, "c1")
    (stored,) = await store.append_events(ch, cid, [message("old")])
    edited = await store.edit_message(ch, cid, stored.message_id or "", {"type": "text", "text": "new"})
    assert edited is not None and edited.seq == stored.seq and edited.edited_at
    assert edited.payload["content"]["text"] == "new"
    assert await store.edit_message(ch, cid, "no-such-message", {}) is None


async def test_keys_are_stored_hashed_and_revocable(sqlite_store: Store, sqlite_url: str) -> None:
    store, database_url = sqlite_store, sqlite_url
    key = generate_key()
    created = await store.create_channel_with_key("c", hash_key(key), key[:8])
    assert (await store.channel_for_key_hash(hash_key(key))) == created
    (info,) = await store.list_keys()
    raw = (
        sqlite3.connect(database_url.removeprefix("sqlite:///")).execute("SELECT * FROM api_keys").fetchall()
    )
    assert key not in repr(raw)
    assert await store.revoke_key(info.id) is not None
    assert await store.channel_for_key_hash(hash_key(key)) is None
    assert await store.key_exists(hash_key(key))


async def test_migrations_are_numbered_and_recorded(store: Store) -> None:
    migrations = load("sqlite")
    assert [m.version for m in load("postgresql")] == [
        m.version for m in migrations
    ]  # one history, two dialects
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert await store.schema_version() == len(migrations)  # type: ignore[attr-defined]


async def test_an_older_database_is_upgraded_in_place(tmp_path: Path) -> None:
    """A file made with only the first migration opens in this release and keeps its data."""
    path = tmp_path / "old.db"
    first = load("sqlite")[0]
    conn = sqlite3.connect(path)
    conn.executescript(first.sql)
    conn.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
    )
    conn.execute("INSERT INTO schema_migrations VALUES (1, ?, '2026-01-01T00:00:00Z')", (first.name,))
    conn.execute("INSERT INTO channels VALUES ('ch_old', 'old', 'demo', '2026-01-01T00:00:00Z')")
    conn.execute(
        "INSERT INTO conversations (id, channel_id, user_id, created_at, updated_at)"
        " VALUES ('c-old', 'ch_old', 'u', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
    )
    conn.commit()
    conn.close()
    store = store_from_url(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.schema_version() == len(load("sqlite"))  # type: ignore[attr-defined]
        assert await store.get_conversation("ch_old", "c-old") is not None
    finally:
        await store.close()


async def test_wal_mode_and_synchronous_level(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path / 'x.db'}", synchronous="NORMAL")
    await store.open()
    await store.close()
    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(ValueError):
        store_from_url("sqlite:///x.db", synchronous="SOMETIMES")
    with pytest.raises(ValueError, match="unsupported database URL"):
        store_from_url("mysql://nope")


async def test_user_message_is_stored_once_per_client_msg_id_and_content(store: Store) -> None:
    ch = await channel(store)
    cid = await conversation(store, ch, "c1")
    first, created = await store.append_user_message(ch, cid, message("hi", "id-1"))
    assert created and first.seq == 1
    retry, created = await store.append_user_message(ch, cid, message("hi", "id-1"))
    assert not created and retry.message_id == first.message_id and retry.seq == 1
    other, created = await store.append_user_message(ch, cid, message("different", "id-1"))
    assert created and other.seq == 2  # same id, other content: a collision, not a retry
    assert len(await store.messages(ch, cid)) == 2
    other_channel = await channel(store, "other")
    with pytest.raises(ConversationNotFound):
        await store.append_user_message(other_channel, cid, message("hi", "id-1"))
    await store.delete_conversation(ch, cid, soft=True)
    with pytest.raises(ConversationNotFound):
        await store.append_user_message(ch, cid, message("hi", "id-1"))


async def test_lookups_by_client_msg_id_and_message_id_use_their_indexes(
    sqlite_store: Store, sqlite_url: str
) -> None:
    database_url = sqlite_url
    conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    plans = [
        " ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, ("c", "x")))
        for sql in (
            (
                "SELECT * FROM events INDEXED BY events_by_client_msg_id WHERE conversation_id = ? AND client_msg_id = ?"
                " AND client_msg_id IS NOT NULL ORDER BY seq"
            ),
            (
                "SELECT * FROM events INDEXED BY events_by_message_id WHERE conversation_id = ? AND message_id = ?"
                " AND message_id IS NOT NULL AND sender IS NOT NULL"
            ),
        )
    ]
    assert "events_by_client_msg_id" in plans[0] and "events_by_message_id" in plans[1]


async def test_agent_tokens_are_listed_per_channel_or_all(store: Store) -> None:
    a, b = await channel(store, "a"), await channel(store, "b")
    first = await store.add_agent_token(a, hash_key(generate_key()), "cat_a", "human", "Alice")
    second = await store.add_agent_token(b, hash_key(generate_key()), "cat_b", "push")
    assert [t.id for t in await store.list_agent_tokens(a)] == [first.id]
    assert [t.id for t in await store.list_agent_tokens(b)] == [second.id]
    assert {t.id for t in await store.list_agent_tokens()} == {first.id, second.id}


async def test_a_new_user_message_costs_two_statements_on_sqlite(tmp_path: Path) -> None:
    """The look for an earlier event with the ``client_msg_id`` is in the statement that takes the seq:
    a message whose id is new costs that one and the INSERT (as one without an id); a repeat of the id
    is looked at and decided by the rule (store/rules.py), as before."""
    from captivate_chat_api.server.store.sqlite import SQLiteStore

    store = SQLiteStore(str(tmp_path / "s.db"))
    await store.open()
    try:
        ch = await channel(store)
        cid = await conversation(store, ch, "c1")
        statements: list[str] = []
        writer = store._writer
        assert writer is not None and writer.conn is not None
        writer.conn.set_trace_callback(statements.append)
        stored, created, record = await store.append_user_turn(ch, cid, message("hi", "id-1"))
        assert created and stored.seq == 1 and record is not None and record.last_seq == 1
        work = [s for s in statements if s not in ("BEGIN IMMEDIATE", "COMMIT")]
        assert len(work) == 2, work
        statements.clear()
        retry, created, _ = await store.append_user_turn(ch, cid, message("hi", "id-1"))
        assert not created and retry.seq == 1 and retry.message_id == stored.message_id
        other, created, record = await store.append_user_turn(ch, cid, message("other", "id-1"))
        assert created and other.seq == 2 and record is not None and record.last_seq == 2
        writer.conn.set_trace_callback(None)
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "s.db")
    plan = " ".join(
        str(r[-1])
        for r in conn.execute(
            "EXPLAIN QUERY PLAN SELECT 1 FROM events INDEXED BY events_by_client_msg_id"
            " WHERE conversation_id = ? AND client_msg_id = ? AND client_msg_id IS NOT NULL",
            ("c", "x"),
        )
    )
    assert "events_by_client_msg_id" in plan
