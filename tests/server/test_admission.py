"""Fair admission (limits.Admission): a tenant over its in-flight share queues behind itself; freed slots
go to the waiting tenants in turn; a tenant's queue is bounded."""

from __future__ import annotations

import asyncio

import pytest

from captivate_chat_api.errors import RateLimitError
from captivate_chat_api.server.limits import Admission


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
