"""PostgreSQL specifics: several processes' stores on one database, and in-place upgrades."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import NewEvent, store_from_url
from captivate_chat_api.server.store.migrate import load


@pytest.fixture
def schema_url(postgres: str):  # type: ignore[no-untyped-def]
    schema = f"t_{uuid.uuid4().hex[:12]}"
    yield f"{postgres}?schema={schema}"

    async def drop() -> None:
        conn = await asyncpg.connect(postgres)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()

    asyncio.run(drop())


async def test_two_stores_append_to_one_conversation_without_gaps(schema_url: str) -> None:
    first, second = store_from_url(schema_url), store_from_url(schema_url)
    await asyncio.gather(
        first.open(), second.open()
    )  # both migrate at once: the advisory lock serializes them
    try:
        key = generate_key()
        channel = await first.create_channel_with_key("c", hash_key(key), key[:8])
        await first.create_conversation(channel.id, "c1", "u", {}, {}, {})
        event = NewEvent("bot_message", {"content": {"type": "text", "text": "x"}}, "bot")
        batches = await asyncio.gather(
            *(
                store.append_events(channel.id, "c1", [event, event])
                for store in (first, second)
                for _ in range(20)
            )
        )
        seqs = sorted(e.seq for batch in batches for e in batch)
        assert seqs == list(range(1, 81))
        for batch in batches:  # a batch is contiguous even when interleaved with another process
            assert [e.seq for e in batch] == list(range(batch[0].seq, batch[0].seq + 2))
        retries = await asyncio.gather(
            *(
                store.append_user_message(
                    channel.id, "c1", NewEvent("user_message", {"content": "hi"}, "user", "m", "same-id")
                )
                for store in (first, second, first, second)
            )
        )
        assert sum(created for _, created in retries) == 1  # one stored, three answered with it
        assert len({event.seq for event, _ in retries}) == 1
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_a_database_at_the_first_migration_is_upgraded(schema_url: str, postgres: str) -> None:
    schema = schema_url.rsplit("schema=", 1)[1]
    conn = await asyncpg.connect(postgres)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
        await conn.execute(load("postgresql")[0].sql)
        await conn.execute(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL);"
            "INSERT INTO schema_migrations VALUES (1, '0001_initial.sql', '2026-01-01T00:00:00Z');"
            "INSERT INTO channels VALUES ('ch_old', 'old', 'demo', '2026-01-01T00:00:00Z');"
            "INSERT INTO conversations (id, channel_id, user_id, created_at, updated_at)"
            " VALUES ('c-old', 'ch_old', 'u', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');"
        )
    finally:
        await conn.close()
    store = store_from_url(schema_url)
    await store.open()
    try:
        assert await store.schema_version() == len(load("postgresql"))  # type: ignore[attr-defined]
        record = await store.get_conversation("ch_old", "c-old")
        assert record is not None and record.handoff == "ai"
    finally:
        await store.close()
