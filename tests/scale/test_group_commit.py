"""PostgreSQL group commit (store/postgres_writer.py): the appends queued together go in one statement, and
a batch changes nothing of what an append means.

- a ``client_msg_id`` repeated within one batch is stored once (and the same id in two conversations twice);
- one append that fails (an unknown or foreign conversation, a statement the server refuses) fails alone;
- a conversation row locked by another transaction holds up its own append only;
- a PostgreSQL outage in the middle of batches fails the appends in flight with a 503 fault, and every
  append that was acknowledged is in the database with the seq it was acknowledged with.

Real PostgreSQL (a schema of this module's own), real stores; the outage goes through a TCP proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from captivate_chat_api.errors import ConversationNotFound
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import NewEvent
from captivate_chat_api.server.store.faults import UNAVAILABLE, classify
from captivate_chat_api.server.store.postgres import PostgresStore
from harness.faultproxy import FaultProxy
from harness.gateway import POSTGRES_URL


@contextlib.asynccontextmanager
async def opened(url: str, **options: Any) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(url, **options)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def channel_with(store: PostgresStore, *conversations: str) -> str:
    key = generate_key()
    channel = await store.create_channel_with_key("c", hash_key(key), key[:8])
    for cid in conversations:
        await store.create_conversation(channel.id, cid, "u", {}, {}, {})
    return channel.id


def user(text: str, client_msg_id: str | None = None, message_id: str = "m") -> NewEvent:
    return NewEvent("user_message", {"content": text}, "user", message_id, client_msg_id)


def bot(text: str) -> NewEvent:
    return NewEvent("bot_message", {"content": {"type": "text", "text": text}}, "bot", f"b-{text}")


def unique(prefix: str) -> str:
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_client_msg_id_repeated_in_one_batch_is_stored_once(postgres_schema: str) -> None:
    async with opened(postgres_schema) as store:
        a, b = unique("a"), unique("b")
        ch = await channel_with(store, a, b)
        before = store.writer.batches
        answers = await asyncio.gather(
            *(store.append_user_message(ch, a, user("hi", "same")) for _ in range(4)),
            store.append_user_message(ch, a, user("other text", "same")),  # same id, other content
            store.append_user_message(ch, b, user("hi", "same")),  # same id, another conversation
        )
        assert store.writer.batches - before <= 5, "queued together, one append per conversation per batch"
        retries, collision, elsewhere = answers[:4], answers[4], answers[5]
        assert sum(created for _, created in retries) == 1, "stored once, three answered with it"
        assert len({event.seq for event, _ in retries}) == 1
        assert collision[1] and elsewhere[1], "other content, or another conversation: a new message"
        assert sorted(e.seq for e in await store.messages(ch, a)) == [1, 2]
        assert [e.seq for e in await store.messages(ch, b)] == [1]
        assert store.writer.alone == 0


async def test_one_failing_append_does_not_fail_its_neighbours(postgres_schema: str) -> None:
    async with opened(postgres_schema) as store:
        good, poisoned, foreign = unique("good"), unique("poisoned"), unique("foreign")
        ch = await channel_with(store, good, poisoned)
        await channel_with(store, foreign)  # another channel
        # a stored user message whose payload jsonb refuses (NUL): a later message with its client_msg_id
        # makes the dedupe look of the batch statement fail on the server (nothing of that batch committed)
        await store.append_user_message(ch, poisoned, user("a\x00b", "nul"))
        await store.append_events(ch, good, [bot("first")])
        before_batches, before_alone = store.writer.batches, store.writer.alone
        answers = await asyncio.gather(
            store.append_user_message(ch, poisoned, user("clean", "nul")),
            store.append_user_message(ch, good, user("hello", "g1")),
            store.append_events(ch, unique("unknown"), [bot("x")]),
            store.append_events(ch, foreign, [bot("x")]),  # another channel's conversation
            store.transition(ch, unique("gone"), allowed_from=frozenset({"ai"}), events=[bot("y")]),
            return_exceptions=True,
        )
        assert store.writer.batches == before_batches, "the batch was refused as a whole"
        assert store.writer.alone - before_alone == 5, "so each of its appends ran on its own"
        poison, hello, unknown, foreign_answer, gone = answers
        assert isinstance(poison, asyncpg.PostgresError), poison  # fails as it did before batching
        assert not isinstance(hello, BaseException) and hello[1] and hello[0].seq == 2
        assert isinstance(unknown, ConversationNotFound)
        assert isinstance(foreign_answer, ConversationNotFound)
        assert isinstance(gone, ConversationNotFound)
        # the next batch is a batch again
        event, created = await store.append_user_message(ch, good, user("again", "g2"))
        assert created and event.seq == 3
        assert store.writer.batches == before_batches + 1


async def test_a_row_locked_elsewhere_holds_up_its_own_append_only(postgres_schema: str) -> None:
    async with opened(postgres_schema) as store:
        locked, free = unique("locked"), unique("free")
        ch = await channel_with(store, locked, free)
        schema = postgres_schema.rsplit("schema=", 1)[1]
        holder = await asyncpg.connect(POSTGRES_URL)
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute(f'SELECT 1 FROM "{schema}".conversations WHERE id = $1 FOR UPDATE', locked)
            waiting = asyncio.ensure_future(store.append_events(ch, locked, [bot("waits")]))
            done = await asyncio.wait_for(store.append_events(ch, free, [bot("goes")]), 3)
            assert done[0].seq == 1
            await asyncio.sleep(0.2)
            assert not waiting.done(), "it waits for the lock (on the pool), as an append always did"
            await transaction.rollback()
            (stored,) = await asyncio.wait_for(waiting, 5)
            assert stored.seq == 1
            assert store.writer.alone >= 1
        finally:
            await holder.close()


async def test_an_outage_mid_batch_is_a_503_and_loses_nothing_acknowledged(postgres_schema: str) -> None:
    upstream = urlsplit(POSTGRES_URL)
    schema_part = postgres_schema.split("?", 1)[1]
    conversations = [unique(f"c{n}") for n in range(40)]
    async with opened(postgres_schema) as direct:
        ch = await channel_with(direct, *conversations)
    acknowledged: list[tuple[str, int, str]] = []
    faults: list[BaseException] = []
    async with FaultProxy(upstream.hostname or "127.0.0.1", upstream.port or 5432) as proxy:
        url = POSTGRES_URL.replace(f"{upstream.hostname}:{upstream.port}", f"127.0.0.1:{proxy.port}")
        options = {"statement_timeout": 1.0, "acquire_timeout": 1.0, "connect_timeout": 1.0}
        async with opened(f"{url}?{schema_part}", **options) as store:
            stop = asyncio.Event()

            async def writes(cid: str) -> None:
                n = 0
                while not stop.is_set():
                    n += 1
                    text = f"{cid}-{n}"
                    try:
                        if n % 2:
                            event, _ = await store.append_user_message(ch, cid, user(text, text, text))
                        else:
                            (event,) = await store.append_events(ch, cid, [bot(text)])
                    except Exception as exc:  # noqa: BLE001 -- every failure is checked below
                        faults.append(exc)
                        await asyncio.sleep(0.05)
                        continue
                    acknowledged.append((cid, event.seq, event.message_id or ""))

            # The load is stopped by what it did, not by the clock (it was 0.5 + 3.0 s of 40 writers flat
            # out, on PostgreSQL's CPU too): each phase ends once its event happened, within the old bound.
            writers = [asyncio.ensure_future(writes(cid)) for cid in conversations]
            await until(lambda: len(acknowledged) >= len(conversations), 0.5)
            assert acknowledged, "appends go through before the outage"
            proxy.cut()  # every connection reset, statements in flight included
            await asyncio.sleep(0.3)
            proxy.black_hole = True  # then a silent network: statements hang until their timeout
            felt = len(faults)
            # past the 1 s statement/acquire timeouts: the hung statements failed (or 2.5 s went by)
            await asyncio.sleep(1.2)
            await until(lambda: len(faults) > felt, 1.3)
            proxy.black_hole = False
            proxy.cut()
            during = len(acknowledged)
            await until(lambda: len(acknowledged) >= during + len(conversations), 3.0)
            stop.set()
            await asyncio.gather(*writers)
            assert len(acknowledged) > during, "appends go through again once PostgreSQL is back"
    assert faults, "the outage was felt"
    for exc in faults:
        assert classify(exc) is UNAVAILABLE, repr(exc)  # answered 503 with Retry-After, never a 500
    async with opened(postgres_schema) as direct:
        for cid in conversations:
            stored = {e.seq: e.message_id for e in await direct.events_after(ch, cid, 0, limit=1_000_000)}
            assert sorted(stored) == list(range(1, len(stored) + 1)), "no gap in any conversation"
            for conversation, seq, message_id in acknowledged:
                if conversation == cid:
                    assert stored.get(seq) == message_id, "an acknowledged append is stored, at its seq"


async def until(predicate: Any, timeout: float) -> None:
    """Wait until ``predicate()`` or ``timeout`` seconds, whichever comes first (the caller asserts)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
