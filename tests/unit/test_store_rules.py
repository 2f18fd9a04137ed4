"""The store's shared rules (store/rules.py), as plain functions: records in, decisions out, no database."""

from __future__ import annotations

from typing import Any

import pytest

from captivate_chat_api.errors import ConversationNotFound, PayloadTooLargeError
from captivate_chat_api.server.store import (
    Channel,
    ConversationRecord,
    EditForbidden,
    ListQuery,
    NewEvent,
    StoredEvent,
    rules,
)
from captivate_chat_api.server.store.query import V1_MAX_CONVERSATIONS


def record(**fields: Any) -> ConversationRecord:
    base: dict[str, Any] = {
        "id": "c1",
        "channel_id": "ch",
        "user_id": "u",
        "user_basic_info": {},
        "metadata": {"plan": "free", "lang": "en"},
        "private_metadata": {"crm": 1},
        "last_seq": 3,
        "created_at": "t0",
        "updated_at": "t1",
    }
    return ConversationRecord(**{**base, **fields})


def hello(text: str = "hi", client_msg_id: str | None = "id-1") -> NewEvent:
    return NewEvent("user_message", {"content": text}, "user", "m-new", client_msg_id)


def stored(
    seq: int, text: str = "hi", sender: str = "user", client_msg_id: str | None = "id-1"
) -> StoredEvent:
    return StoredEvent("c1", seq, "user_message", {"content": text}, "t", sender, f"m{seq}", client_msg_id)


# liveness


def test_an_unknown_conversation_is_conversation_not_found() -> None:
    assert rules.require_live("row", "c1") == "row"
    with pytest.raises(ConversationNotFound) as raised:
        rules.require_live(None, "c1")
    assert raised.value.error_code == 404 and raised.value.conversation_id == "c1"


# the hand-off guard


def test_the_guard_allows_only_the_listed_states_and_the_owner() -> None:
    waiting = record(handoff="waiting_human")
    assert rules.transition_allowed(waiting, frozenset({"waiting_human"}), None)
    assert not rules.transition_allowed(waiting, frozenset({"ai"}), None)
    live = record(handoff="human", human_agent="tok_a")
    assert rules.transition_allowed(live, frozenset({"human"}), "tok_a")
    assert not rules.transition_allowed(live, frozenset({"human"}), "tok_b")


def test_a_transition_sets_what_is_given_clears_with_empty_and_marks_livechat() -> None:
    current = record(handoff="ai", agent="sales")
    taken = rules.transitioned(current, handoff="human", human_agent="tok_a")
    assert (taken.handoff, taken.human_agent, taken.agent, taken.has_livechat) == (
        "human",
        "tok_a",
        "sales",
        True,
    )
    ended = rules.transitioned(taken, handoff="ai", human_agent="", agent="")
    assert (ended.handoff, ended.human_agent, ended.agent, ended.has_livechat) == ("ai", None, None, True)
    assert rules.transitioned(current) == current  # an agent's reply: nothing but the log changes
    assert not rules.transitioned(current, agent="support").has_livechat


def test_only_a_change_of_no_field_and_no_owner_check_is_a_plain_guarded_append() -> None:
    assert rules.only_appends(None, None, None, None)
    assert not rules.only_appends("human", None, None, None)
    assert not rules.only_appends(None, "", None, None)
    assert not rules.only_appends(None, None, None, "tok_a")


# pagination


def test_v2_pages_by_limit_and_v1_answers_the_newest_maximum() -> None:
    assert rules.page_window(ListQuery(["ch"], "u", page=3, limit=10)) == (10, 20)
    assert rules.page_window(ListQuery(["ch"], "u")) == (V1_MAX_CONVERSATIONS, 0)


def test_a_page_reports_the_asked_size_or_how_many_came() -> None:
    items = [record(id=f"c{i}") for i in range(5)]
    v2 = ListQuery(["ch"], "u", page=2, limit=2)
    page = rules.page_from(v2, items)
    assert ([c.id for c in page.items], page.total, page.page, page.page_size) == (["c2", "c3"], 5, 2, 2)
    v1 = rules.page_from(ListQuery(["ch"], "u"), items)
    assert (len(v1.items), v1.total, v1.page_size) == (5, 5, 5)
    last = rules.page_from(ListQuery(["ch"], "u", page=4, limit=2), items)
    assert (last.items, last.total, last.page_size) == ([], 5, 2)
    empty = rules.empty_page(ListQuery([], "u", page=1, limit=10))
    assert (empty.items, empty.total, empty.page_size) == ([], 0, 10)


# metadata


def test_metadata_patches_merge_shallowly_and_the_limit_counts_the_result() -> None:
    current = record(metadata={"plan": "free", "nested": {"a": 1}})
    public, private = rules.merged_metadata(current, {"plan": "pro", "nested": {"b": 2}}, {"crm": 7})
    assert public == {"plan": "pro", "nested": {"b": 2}} and private == {"crm": 7}
    rules.check_metadata_size(1000, current, {"plan": "pro"}, {})
    with pytest.raises(PayloadTooLargeError) as raised:
        rules.check_metadata_size(100, current, {"big": "x" * 200}, {})
    assert raised.value.error_code == 413 and "metadata" in raised.value.error_desc


def test_a_channel_update_keeps_what_is_not_given_and_merges_named_agents() -> None:
    current = Channel("ch", "n", agent="demo", agents={"sales": "webhook:a"}, webhook_secret="s")
    new = rules.merged_channel(current, agent=None, agents={"support": "demo"}, webhook_secret=None)
    assert (new.agent, new.agents, new.webhook_secret) == (
        "demo",
        {"sales": "webhook:a", "support": "demo"},
        "s",
    )
    assert (
        rules.merged_channel(current, agent="openai:m", agents=None, webhook_secret="t").webhook_secret == "t"
    )


# the client_msg_id retry rule

RETRY_CASES = [
    pytest.param([stored(1)], hello(), 1, id="same id and payload: the first copy"),
    pytest.param([stored(1, "other")], hello(), None, id="same id, other content: a new message"),
    pytest.param([stored(1, sender="bot")], hello(), None, id="only another sender has the id: new"),
    pytest.param([stored(1, "other"), stored(2), stored(3)], hello(), 2, id="the earliest matching copy"),
    pytest.param([], hello(), None, id="never seen: new"),
]


@pytest.mark.parametrize(("earlier", "event", "seq"), RETRY_CASES)
def test_a_retry_is_a_user_message_with_the_same_id_and_payload(
    earlier: list[StoredEvent], event: NewEvent, seq: int | None
) -> None:
    found = rules.retry_of(event, earlier)
    assert (found.seq if found else None) == seq


def test_a_message_without_a_client_msg_id_is_always_new() -> None:
    assert not rules.deduplicates(hello(client_msg_id=None)) and not rules.deduplicates(
        hello(client_msg_id="")
    )
    assert rules.deduplicates(hello())
    assert rules.retry_of(hello(client_msg_id=None), [stored(1, client_msg_id=None)]) is None


# edits


def test_only_the_listed_senders_may_edit_and_an_edit_keeps_the_rest() -> None:
    rules.check_editable("user", frozenset({"user"}))
    rules.check_editable("bot", None)
    with pytest.raises(EditForbidden):
        rules.check_editable("bot", frozenset({"user"}))
    assert rules.edited_payload({"content": "old", "x": 1}, "new") == {"content": "new", "x": 1}
