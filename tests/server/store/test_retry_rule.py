"""The ``client_msg_id`` retry rule is one rule (store/rules.py ``retry_of``): both backends, SQLite and
PostgreSQL, answer each case as the rule says, and serialize the look and the append the same way."""

from __future__ import annotations

import asyncio

import pytest

from captivate_chat_api.errors import ConversationNotFound
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import NewEvent, Store
from captivate_chat_api.server.store.rules import retry_of


def said(text: str, client_msg_id: str | None, sender: str = "user") -> NewEvent:
    kind = "user_message" if sender == "user" else "bot_message"
    return NewEvent(kind, {"content": {"type": "text", "text": text}}, sender, f"m-{text}", client_msg_id)


async def channel(store: Store, name: str = "c") -> str:
    key = generate_key()
    return (await store.create_channel_with_key(name, hash_key(key), key[:8])).id


async def conversation(store: Store) -> tuple[str, str]:
    ch = await channel(store)
    await store.create_conversation(ch, "c1", "u1", {}, {}, {})
    return ch, "c1"


CASES = [
    # (what is stored first, the message sent again, the seq it is answered with: None = stored anew)
    pytest.param([said("hi", "id-1")], said("hi", "id-1"), 1, id="same id and content: a retry"),
    pytest.param([said("hi", "id-1")], said("other", "id-1"), None, id="same id, other content: new"),
    pytest.param(
        [said("hi", "id-1", "bot")], said("hi", "id-1"), None, id="only a bot event has the id: new"
    ),
    pytest.param(
        [said("other", "id-1"), said("hi", "id-1"), said("hi", "id-1")],
        said("hi", "id-1"),
        2,
        id="the earliest matching copy",
    ),
    pytest.param([said("hi", None)], said("hi", None), None, id="no id: always new"),
]


@pytest.mark.parametrize(("first", "again", "answered_with"), CASES)
async def test_each_backend_answers_a_repeat_as_the_rule_says(
    store: Store, first: list[NewEvent], again: NewEvent, answered_with: int | None
) -> None:
    ch, cid = await conversation(store)
    for event in first:  # stored as they came, whatever the rule would say of them (a bot's event too)
        await store.append_events(ch, cid, [event])
    before = await store.events_after(ch, cid, 0)
    earlier = [e for e in before if e.client_msg_id == again.client_msg_id]
    expected = retry_of(again, earlier)
    assert (expected.seq if expected else None) == answered_with  # the rule itself, for this case
    event, created = await store.append_user_message(ch, cid, again)
    after = await store.events_after(ch, cid, 0)
    if expected is None:
        assert created and event.seq == len(before) + 1 and len(after) == len(before) + 1
    else:
        assert not created and event == expected and after == before  # nothing written


async def test_concurrent_copies_of_one_message_are_stored_once(store: Store) -> None:
    """The look and the append are one serialized step: SQLite's one writer thread, PostgreSQL's row lock."""
    ch, cid = await conversation(store)
    results = await asyncio.gather(
        *(store.append_user_message(ch, cid, said("hi", "same")) for _ in range(8))
    )
    assert sum(created for _, created in results) == 1
    assert {event.seq for event, _ in results} == {1}
    assert len(await store.events_after(ch, cid, 0)) == 1


async def test_a_retry_into_a_gone_or_foreign_conversation_is_not_found(store: Store) -> None:
    ch, cid = await conversation(store)
    await store.append_user_message(ch, cid, said("hi", "id-1"))
    other = await channel(store, "other")
    with pytest.raises(ConversationNotFound):  # the copy exists, but not for this channel
        await store.append_user_message(other, cid, said("hi", "id-1"))
    await store.delete_conversation(ch, cid, soft=True)
    with pytest.raises(ConversationNotFound):  # the copy exists, but the conversation was deleted
        await store.append_user_message(ch, cid, said("hi", "id-1"))
