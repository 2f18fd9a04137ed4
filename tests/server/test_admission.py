"""Fair admission (limits.Admission): a tenant over its in-flight share queues behind itself; freed slots
go to the waiting tenants in turn; a tenant's queue is bounded; a unit waiting on its commit lends its slot
(limits.without_slot)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from captivate_chat_api.errors import RateLimitError
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.limits import Admission, without_slot
from captivate_chat_api.server.store import NewEvent, Store, store_from_url
from harness.gateway import postgres_schema, require_postgres


async def test_a_flooding_tenant_queues_behind_itself() -> None:
    admission = Admission(per_tenant=2, total=3)
    order: list[str] = []
    gate = asyncio.Event()

    async def work(tenant: str, n: int) -> None:
        async with admission.slot(tenant):
            order.append(f"{tenant}{n}")
            await gate.wait()

    flood = [asyncio.create_task(work("A", n)) for n in range(20)]
    await asyncio.sleep(0)
    late = asyncio.create_task(work("B", 0))
    await asyncio.sleep(0.01)
    assert order == ["A0", "A1", "B0"]  # B is admitted at once: A holds only its share
    assert admission.running == 3 and admission.in_flight == {"A": 2, "B": 1}
    gate.set()
    await asyncio.gather(*flood, late)
    assert admission.running == 0 and admission.in_flight == {}


async def test_freed_slots_go_round_robin_and_queues_are_bounded() -> None:
    admission = Admission(per_tenant=1, total=1, max_waiting=3)
    order: list[str] = []
    release = asyncio.Event()

    async def work(tenant: str, n: int) -> None:
        async with admission.slot(tenant):
            order.append(f"{tenant}{n}")
            await asyncio.sleep(0)
            if not release.is_set():
                await release.wait()

    tasks = [asyncio.create_task(work("A", n)) for n in range(4)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(work("B", n)) for n in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimitError):
        async with admission.slot("A"):  # A0 runs, A1..A3 wait: the queue is full
            pass
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["A0", "B0", "A1", "B1", "A2", "A3"]


async def test_a_cancelled_waiter_leaves_no_slot_behind() -> None:
    admission = Admission(per_tenant=1, total=1)
    hold = asyncio.Event()

    async def work() -> None:
        async with admission.slot("A"):
            await hold.wait()

    first = asyncio.create_task(work())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(work())
    await asyncio.sleep(0)
    waiting.cancel()
    hold.set()
    await first
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert admission.running == 0
    async with admission.slot("A"):
        assert admission.running == 1


async def test_a_tenants_agent_turns_go_before_its_new_events_and_are_never_refused() -> None:
    admission = Admission(per_tenant=1, total=4, max_waiting=1)
    order: list[str] = []
    hold = asyncio.Event()

    async def work(name: str, *, turn: bool = False) -> None:
        async with admission.slot("A", turn=turn):
            order.append(name)
            await hold.wait()

    first = asyncio.create_task(work("event0"))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(work("event1"))]
    await asyncio.sleep(0)
    with pytest.raises(RateLimitError):  # A's one waiting event fills its line for events ...
        async with admission.slot("A"):
            pass
    waiting += [asyncio.create_task(work(f"turn{n}", turn=True)) for n in range(3)]  # ... not for turns
    await asyncio.sleep(0)
    hold.set()
    await asyncio.gather(first, *waiting)
    assert order == ["event0", "turn0", "turn1", "turn2", "event1"]


async def test_a_tenant_keeps_its_full_share_only_while_alone() -> None:
    admission = Admission(per_tenant=4, total=64)
    hold = asyncio.Event()
    admitted: list[str] = []

    async def work(tenant: str) -> None:
        async with admission.slot(tenant):
            admitted.append(tenant)
            await hold.wait()

    alone = [asyncio.create_task(work("A")) for _ in range(6)]
    await asyncio.sleep(0)
    assert admission.in_flight == {"A": 4} and admission.share() == 4
    await asyncio.sleep(0.15)  # the active tenants are recounted at most every 0.1 s
    other = asyncio.create_task(work("B"))
    await asyncio.sleep(0)
    assert admission.active == 2 and admission.share() == 2
    assert admission.in_flight == {"A": 4, "B": 1}
    hold.set()
    await asyncio.gather(*alone, other)
    assert admission.running == 0


async def test_a_unit_waiting_on_its_commit_lends_its_share_but_keeps_its_place_in_the_total() -> None:
    """``without_slot``: while A0 only waits (its commit), A's next event runs in A's one share slot, and A0
    still counts in the total (B waits for room); once committed A0 takes A's slot back before A's newer
    event, and the room A1 frees goes to B (round robin), not to A."""
    admission = Admission(per_tenant=1, total=2)
    order: list[str] = []
    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    gate = asyncio.Event()

    async def committing() -> None:
        async with admission.slot("A"):
            order.append("A0 before its commit")
            await without_slot(commit)
            order.append("A0 after its commit")
            assert admission.in_flight["A"] == 1 and admission.lent == {}  # it holds A's slot again

    async def work(name: str, tenant: str) -> None:
        async with admission.slot(tenant):
            order.append(name)
            await gate.wait()

    a0 = asyncio.create_task(committing())
    await asyncio.sleep(0)
    a1 = asyncio.create_task(work("A1", "A"))
    await asyncio.sleep(0.01)
    assert order == ["A0 before its commit", "A1"]  # A0 lent its share slot: A1 runs in it
    assert admission.in_flight == {"A": 1} and admission.lent == {"A": 1} and admission.running == 2
    b0 = asyncio.create_task(work("B0", "B"))
    a2 = asyncio.create_task(work("A2", "A"))
    await asyncio.sleep(0.01)
    assert order == ["A0 before its commit", "A1"]  # the total is full: B0 and A2 wait
    commit.set_result(None)  # A0 wants A's share slot back: A1 has it, so A0 waits, first of A's line
    await asyncio.sleep(0.01)
    assert admission.lent == {"A": 1} and len(order) == 2
    gate.set()
    await asyncio.gather(a0, a1, b0, a2)
    assert order == ["A0 before its commit", "A1", "A0 after its commit", "B0", "A2"]
    assert admission.running == 0 and admission.in_flight == {} and admission.lent == {}


async def test_a_lone_key_has_up_to_the_total_under_way_and_a_new_key_is_served_next() -> None:
    """The old rule held a lone key to ``per_tenant`` units whatever they waited on; now those waiting on
    their commit do not count in its share, only in the total. When a second key comes, the room the first
    key's units free goes to it before the first key's new events."""
    admission = Admission(per_tenant=2, total=8)
    commits = [asyncio.get_running_loop().create_future() for _ in range(10)]
    order: list[str] = []

    async def message(tenant: str, n: int) -> None:
        async with admission.slot(tenant):
            order.append(f"{tenant}{n}")
            await without_slot(commits[n])

    a = [asyncio.create_task(message("A", n)) for n in range(10)]
    await asyncio.sleep(0.01)
    assert order == [f"A{n}" for n in range(8)]  # 8 under way: far over its share of 2, up to the total
    assert admission.running == 8 and admission.lent == {"A": 8} and admission.in_flight == {}
    b = asyncio.create_task(message("B", 9))
    await asyncio.sleep(0.01)
    assert len(order) == 8  # no room: B waits, as do A8 and A9
    commits[0].set_result(None)  # A0 is committed, takes A's slot back, finishes: room for one
    await asyncio.sleep(0.01)
    assert order[8:] == ["B9"]  # the room went to B, A8 still waits
    for n in range(1, 10):
        if not commits[n].done():
            commits[n].set_result(None)
    await asyncio.gather(*a, b)
    assert order[9:] == ["A8", "A9"]
    assert admission.running == 0 and admission.in_flight == {} and admission.lent == {}


async def test_when_a_second_key_comes_the_first_keeps_only_its_room_under_way() -> None:
    """A lone key may have up to the total under way (its commits' waits); once a second key is active,
    its room is its (divided) share, as if its units held their slots through their commits: its new events
    wait until it has less than that under way, and its units coming back from their commits are at most
    that share at work at once."""
    admission = Admission(per_tenant=4, total=16)
    commits = [asyncio.get_running_loop().create_future() for _ in range(12)]
    order: list[str] = []
    at_work: list[int] = []
    gate = asyncio.Event()

    async def message(n: int) -> None:
        async with admission.slot("A"):
            await without_slot(commits[n])
            at_work.append(admission.in_flight["A"])
            await asyncio.sleep(0)
            order.append(f"A{n} done")

    async def late(name: str, tenant: str) -> None:
        async with admission.slot(tenant):
            order.append(name)
            await gate.wait()

    a = [asyncio.create_task(message(n)) for n in range(12)]
    await asyncio.sleep(0.01)
    assert admission.lent == {"A": 12} and admission.running == 12  # alone: 12 under way, share 4
    await asyncio.sleep(0.15)  # the active tenants are recounted at most every 0.1 s
    b = asyncio.create_task(late("B0", "B"))
    await asyncio.sleep(0)
    assert admission.active == 2 and admission.share() == 2 and admission.room() == 2
    a12 = asyncio.create_task(late("A12", "A"))
    await asyncio.sleep(0.01)
    assert order == ["B0"]  # A has 12 under way, more than its room of 2: its new event waits
    for n in range(6):  # 6 committed one by one
        commits[n].set_result(None)
        await asyncio.sleep(0.01)
    for n in range(6, 10):  # then 4 at once
        commits[n].set_result(None)
    await asyncio.sleep(0.05)
    assert "A12" not in order  # 2 of A's still under way: its room is full
    assert len(at_work) == 10 and max(at_work) == 2  # the divided share at work, never more
    commits[10].set_result(None)
    await asyncio.sleep(0.01)
    assert order.index("A12") == 1 + 11  # 1 under way, under its room: A12 starts
    commits[11].set_result(None)
    gate.set()
    await asyncio.gather(*a, b, a12)
    assert admission.running == 0 and admission.in_flight == {} and admission.lent == {}


async def test_a_slot_is_lent_only_by_the_task_that_holds_it_and_never_leaks() -> None:
    """A task started from within a unit inherits its context, not its slot; a unit cancelled while its
    slot is lent or while taking it back leaves nothing behind; a disabled admission lends nothing."""
    admission = Admission(per_tenant=1, total=2)
    async with admission.slot("A"):
        child = asyncio.create_task(without_slot(asyncio.sleep(0.01)))
        await asyncio.sleep(0)
        assert admission.in_flight == {"A": 1} and admission.lent == {}  # the child's wait lent nothing
        await child
    assert admission.running == 0

    commit: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def committing() -> None:
        async with admission.slot("A"):
            await without_slot(commit)

    task = asyncio.create_task(committing())
    await asyncio.sleep(0.01)
    assert admission.lent == {"A": 1} and admission.running == 1 and admission.in_flight == {}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert admission.running == 0 and admission.in_flight == {} and admission.lent == {}

    hold = asyncio.Event()
    commit = asyncio.get_running_loop().create_future()

    async def holding() -> None:
        async with admission.slot("A"):
            await hold.wait()

    task = asyncio.create_task(committing())
    await asyncio.sleep(0.01)
    holder = asyncio.create_task(holding())
    await asyncio.sleep(0.01)
    commit.set_result(None)  # the take-back waits for A's one share slot ...
    await asyncio.sleep(0.01)
    task.cancel()  # ... and is cancelled there
    with pytest.raises(asyncio.CancelledError):
        await task
    hold.set()
    await holder
    assert admission.running == 0 and admission.in_flight == {} and admission.lent == {}
    async with admission.slot("A"):
        assert admission.running == 1
    assert await without_slot(asyncio.sleep(0, "no slot held")) == "no slot held"
    async with Admission(0, 0).slot("A"):
        assert await without_slot(asyncio.sleep(0, "disabled")) == "disabled"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    base = require_postgres()
    for schema in postgres_schema("adm"):
        yield f"{base}?schema={schema}"


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[Store]:
    store = store_from_url(postgres_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


async def test_a_lone_key_has_more_commits_under_way_than_its_share(postgres_store: Store) -> None:
    """On PostgreSQL a key's units do not hold their share slots while their writes wait for the commit:
    with a share of one, the 16 messages of a lone key are in the store together (group commit) rather
    than one at a time (one commit's wait each), and never more than one of them is at work on the gateway."""
    store = postgres_store
    key = generate_key()
    channel = await store.create_channel_with_key("c", hash_key(key), key[:8])
    ids = [f"c{n}" for n in range(16)]
    for cid in ids:
        await store.create_conversation(channel.id, cid, "u", {}, {}, {})
    admission = Admission(per_tenant=1, total=64)
    in_store = peak_in_store = peak_at_work = 0

    async def message(cid: str, n: int) -> None:
        nonlocal in_store, peak_in_store, peak_at_work
        async with admission.slot(channel.id):  # as the client-event routes take it
            peak_at_work = max(peak_at_work, sum(admission.in_flight.values()))
            in_store += 1
            peak_in_store = max(peak_in_store, in_store)
            event = NewEvent("user_message", {"type": "text", "text": f"m{n}"}, "user", client_msg_id=f"m{n}")
            stored, created, _ = await store.append_user_turn(channel.id, cid, event)
            in_store -= 1
            peak_at_work = max(peak_at_work, sum(admission.in_flight.values()))
            assert created and stored.seq >= 1

    await asyncio.gather(*(message(cid, n) for n, cid in enumerate(ids)))
    assert peak_at_work == 1  # the share held: one unit at work on the gateway at a time
    assert peak_in_store > 1  # but the commits' waits overlapped (the old rule: exactly 1)
    assert admission.running == 0 and admission.in_flight == {} and admission.lent == {}
    assert [len(await store.messages(channel.id, cid)) for cid in ids] == [1] * 16
