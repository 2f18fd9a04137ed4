"""Listings paged in the database: v1 capped at its documented maximum (newest first), filters and search
as SQL with the same meaning as before, on both stores."""

from __future__ import annotations

from test_store import channel, conversation

from captivate_chat_api.server.store import ListQuery, Store
from captivate_chat_api.server.store.query import V1_MAX_CONVERSATIONS


async def test_v1_answers_at_most_the_documented_maximum_newest_first(store: Store) -> None:
    ch = await channel(store)
    for i in range(V1_MAX_CONVERSATIONS + 5):
        await conversation(store, ch, f"c{i:03d}")
    listed = await store.list_conversations(ListQuery([ch], "u1"))
    assert len(listed.items) == V1_MAX_CONVERSATIONS
    assert listed.total == V1_MAX_CONVERSATIONS + 5
    stamps = [(c.updated_at, c.id) for c in listed.items]
    assert stamps == sorted(stamps, key=lambda s: s[0], reverse=True)
    # the ones left out are the oldest (timestamps have millisecond resolution: ties may fall either side)
    left_out = {f"c{i:03d}" for i in range(V1_MAX_CONVERSATIONS + 5)} - {c.id for c in listed.items}
    assert len(left_out) == 5
    for cid in left_out:
        record = await store.get_conversation(ch, cid)
        assert record is not None and record.updated_at <= stamps[-1][0]


async def test_typed_filters_and_text_search_in_sql(store: Store) -> None:
    ch = await channel(store)
    await conversation(store, ch, "a", vip=True, n=1, note=None, name="Ann O'Neil", tags={"x": 1})
    await conversation(store, ch, "b", vip=False, n=2.5, note="late", name="bob", tags={"x": 2})
    await conversation(store, ch, "c", vip="true", n="1", name="Cy")

    async def ids(**query: object) -> list[str]:
        page = await store.list_conversations(ListQuery([ch], "u1", **query))  # type: ignore[arg-type]
        assert page.total == len(page.items)
        return sorted(c.id for c in page.items)

    assert await ids(filter={"vip": True}) == ["a"]
    assert await ids(filter={"vip": False}) == ["b"]
    assert await ids(filter={"vip": "true"}) == ["c"]
    assert await ids(filter={"n": 1}) == ["a"]
    assert await ids(filter={"n": 2.5}) == ["b"]
    assert await ids(filter={"n": "1"}) == ["c"]
    assert await ids(filter={"note": None}) == ["a"]
    assert await ids(filter={"tags": {"x": 2}}) == ["b"]
    assert await ids(filter={"missing": 1}) == []
    assert await ids(search={"name": "o'ne"}) == ["a"]
    assert await ids(search={"name": "B"}) == ["b"]
    assert await ids(search={"name": "%"}) == []  # no LIKE wildcards
    assert await ids(filter={"vip": True}, search={"name": "ann"}) == ["a"]
    second = await store.list_conversations(ListQuery([ch], "u1", page=2, limit=2))
    assert (second.total, len(second.items)) == (3, 1)
