"""The hand-off guard (store/rules.py) as both backends apply it: a transition with its events, atomically,
only from an allowed state and with the right owner."""

from __future__ import annotations

import pytest

from captivate_chat_api.errors import ConversationNotFound
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import NewEvent, Store

AI, WAITING, HUMAN = frozenset({"ai"}), frozenset({"waiting_human"}), frozenset({"human"})


def note(text: str) -> NewEvent:
    return NewEvent("system_message", {"content": {"type": "text", "text": text}}, "system", f"m-{text}")


async def conversation(store: Store, name: str = "c", cid: str = "c1") -> str:
    key = generate_key()
    channel = await store.create_channel_with_key(name, hash_key(key), key[:8])
    await store.create_conversation(channel.id, cid, "u1", {}, {}, {})
    return channel.id


async def test_a_live_chat_goes_round_with_its_events(store: Store) -> None:
    ch = await conversation(store)
    escalated = await store.transition(
        ch, "c1", allowed_from=AI, handoff="waiting_human", events=[note("wait")]
    )
    assert escalated is not None
    record, events = escalated
    assert (record.handoff, record.has_livechat, record.last_seq) == ("waiting_human", True, 1)
    assert [e.seq for e in events] == [1]
    taken = await store.transition(
        ch, "c1", allowed_from=WAITING, handoff="human", human_agent="tok_a", events=[note("joined")]
    )
    assert taken is not None and (taken[0].handoff, taken[0].human_agent) == ("human", "tok_a")
    ended = await store.transition(
        ch,
        "c1",
        allowed_from=HUMAN,
        require_human_agent="tok_a",
        handoff="ai",
        human_agent="",
        events=[note("ended")],
    )
    assert ended is not None
    assert (ended[0].handoff, ended[0].human_agent, ended[0].has_livechat) == ("ai", None, True)
    stored = await store.get_conversation(ch, "c1")
    assert stored == ended[0]  # what the transition answered is what is stored
    assert [e.seq for e in await store.events_after(ch, "c1", 0)] == [1, 2, 3]


async def test_another_state_or_owner_is_refused_and_writes_nothing(store: Store) -> None:
    ch = await conversation(store)
    assert await store.transition(ch, "c1", allowed_from=WAITING, handoff="human", events=[note("x")]) is None
    await store.transition(ch, "c1", allowed_from=AI, handoff="human", human_agent="tok_a", events=[])
    assert (
        await store.transition(
            ch, "c1", allowed_from=HUMAN, require_human_agent="tok_b", handoff="ai", events=[note("y")]
        )
        is None
    )
    # an AI agent's reply (no field changes): refused while a human has the conversation
    assert await store.transition(ch, "c1", allowed_from=AI, events=[note("bot")]) is None
    record = await store.get_conversation(ch, "c1")
    assert record is not None and (record.handoff, record.human_agent, record.last_seq) == (
        "human",
        "tok_a",
        0,
    )
    assert await store.events_after(ch, "c1", 0) == []


async def test_a_guard_only_check_changes_nothing_and_a_reply_appends(store: Store) -> None:
    ch = await conversation(store)
    before = await store.get_conversation(ch, "c1")
    checked = await store.transition(ch, "c1", allowed_from=AI, events=[])
    assert checked is not None and checked == (before, [])
    replied = await store.transition(ch, "c1", allowed_from=AI, events=[note("answer")])
    assert replied is not None and replied[0].last_seq == 1 and replied[0].handoff == "ai"
    switched = await store.transition(ch, "c1", allowed_from=AI, agent="sales", events=[])
    assert switched is not None and switched[0].agent == "sales" and not switched[0].has_livechat
    cleared = await store.transition(ch, "c1", allowed_from=AI, agent="", events=[])
    assert cleared is not None and cleared[0].agent is None


@pytest.mark.parametrize("events", [[], [note("x")]], ids=["guard only", "with events"])
async def test_an_unknown_or_foreign_conversation_is_not_found(store: Store, events: list[NewEvent]) -> None:
    ch = await conversation(store)
    other = await conversation(store, "other", "c2")
    for channel_id, cid in ((other, "c1"), (ch, "no-such")):
        with pytest.raises(ConversationNotFound):
            await store.transition(channel_id, cid, allowed_from=AI, events=events)
        with pytest.raises(ConversationNotFound):
            await store.transition(channel_id, cid, allowed_from=AI, handoff="waiting_human", events=events)


async def test_metadata_goes_with_its_events_or_not_at_all(store: Store) -> None:
    """An AI answer's metadata patch is applied in the guarded step itself: refused, nothing changes."""
    ch = await conversation(store)
    applied = await store.transition(
        ch, "c1", allowed_from=AI, events=[note("answer")], metadata=({"title": "t1"}, {"crm": 1})
    )
    assert applied is not None
    record, events = applied
    assert (record.metadata, record.private_metadata, record.last_seq) == ({"title": "t1"}, {"crm": 1}, 1)
    assert [e.seq for e in events] == [1]
    assert await store.get_conversation(ch, "c1") == record
    guard_only = await store.transition(ch, "c1", allowed_from=AI, events=[], metadata=({"b": 2}, {}))
    assert guard_only is not None and guard_only[0].metadata == {"title": "t1", "b": 2}
    await store.transition(ch, "c1", allowed_from=AI, handoff="human", human_agent="tok_a", events=[])
    refused = await store.transition(
        ch, "c1", allowed_from=AI, events=[note("late")], metadata=({"title": "late"}, {"crm": 2})
    )
    assert refused is None
    stored = await store.get_conversation(ch, "c1")
    assert stored is not None
    assert (stored.metadata, stored.private_metadata) == ({"title": "t1", "b": 2}, {"crm": 1})
    assert [e.seq for e in await store.events_after(ch, "c1", 0)] == [1]


async def test_append_if_appends_in_an_allowed_state_only(store: Store) -> None:
    """An AI agent's reply without the conversation record (Store.append_if): the guard and the append in
    one step; refused (None, nothing written) while a human has the conversation; unknown: not found."""
    ch = await conversation(store)
    stored = await store.append_if(ch, "c1", [note("a"), note("b")], allowed_from=AI)
    assert stored is not None and [(e.seq, e.message_id) for e in stored] == [(1, "m-a"), (2, "m-b")]
    assert await store.events_after(ch, "c1", 0) == stored  # what it answered is what is stored
    record = await store.get_conversation(ch, "c1")
    assert record is not None and record.last_seq == 2
    await store.transition(ch, "c1", allowed_from=AI, handoff="human", human_agent="tok_a", events=[])
    assert await store.append_if(ch, "c1", [note("c")], allowed_from=AI) is None
    after = await store.get_conversation(ch, "c1")
    assert after is not None and after.last_seq == 2 and after.updated_at == record.updated_at
    assert len(await store.events_after(ch, "c1", 0)) == 2
    with pytest.raises(ConversationNotFound):
        await store.append_if(ch, "nope", [note("d")], allowed_from=AI)
    other = await conversation(store, "other", "c2")
    with pytest.raises(ConversationNotFound):  # another channel's conversation looks unknown
        await store.append_if(other, "c1", [note("e")], allowed_from=HUMAN)
