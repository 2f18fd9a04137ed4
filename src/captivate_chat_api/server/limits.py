"""Rate limits: token buckets per socket and per API key (channel).

A bucket holds ``burst`` tokens and refills at ``rate`` per second; each client event takes one. An event
over the limit is refused (WebSocket ``general_error`` 429, HTTP 429 with ``Retry-After``) and nothing of
it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections import deque
from collections.abc import Awaitable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..errors import PayloadTooLargeError, RateLimitError

T = TypeVar("T")


def json_size(*parts: Any) -> int:
    """Bytes of ``parts`` as compact JSON (as stored)."""
    return sum(len(json.dumps(part, ensure_ascii=False, separators=(",", ":")).encode()) for part in parts)


def check_size(limit: int, what: str, *parts: Any) -> None:
    """413 when ``parts`` together are larger than ``limit`` bytes of JSON. One rule for every writer:
    the client's ``metadata`` and ``conversation_start``, an agent's answer and an async push."""
    if json_size(*parts) > limit:
        raise PayloadTooLargeError(413, f"{what} larger than {limit} bytes")


@dataclass(slots=True)
class TokenBucket:
    rate: float
    burst: float
    tokens: float = field(default=-1.0)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float | None = None) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf


class RateLimiter:
    """Buckets by key (a channel id, or a socket id), created on first use and pruned when full again."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._prune()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def give_back(self, key: str) -> None:
        """Return the token just taken for ``key`` (the event was refused by another limit)."""
        bucket = self._buckets.get(key)
        if bucket is not None:
            bucket.tokens = min(bucket.burst, bucket.tokens + 1.0)

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)

    def _prune(self) -> None:
        now = time.monotonic()
        for key, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * bucket.rate >= bucket.burst:
                del self._buckets[key]


class Limits:
    """The gateway's rate limits for client events."""

    def __init__(
        self,
        socket_rate: float,
        socket_burst: float,
        key_rate: float,
        key_burst: float,
        *,
        in_flight_per_key: int = 0,
        in_flight_total: int = 0,
    ) -> None:
        self.per_socket = RateLimiter(socket_rate, socket_burst)
        self.per_key = RateLimiter(key_rate, key_burst)
        self.admission = Admission(in_flight_per_key, in_flight_total)

    def check(self, channel_id: str, socket_id: str | None) -> None:
        """Raise RateLimitError (429, with ``retry_after``) when the socket or the key is over its rate. A
        refused event costs nothing: a socket over its own rate does not spend its key's (its channel's) tokens,
        so one socket retrying too fast cannot use up what the key's other sockets may send."""
        wait = self.per_key.take(channel_id)
        if not wait and socket_id is not None:
            wait = self.per_socket.take(socket_id)
            if wait:
                self.per_key.give_back(channel_id)
        if wait:
            raise RateLimitError(429, f"rate limit exceeded; retry in {wait:.2f} s", retry_after=wait)


_NONE, _BACK, _NEW = 0, 1, 2


class _Line:
    """One tenant's waiters: units taking their slot back after a commit (:func:`without_slot`), then its
    agent turns (work it was already promised), then its new events."""

    __slots__ = ("backs", "events", "turns")

    def __init__(self) -> None:
        self.backs: deque[asyncio.Future[None]] = deque()
        self.turns: deque[asyncio.Future[None]] = deque()
        self.events: deque[asyncio.Future[None]] = deque()

    def __bool__(self) -> bool:
        return bool(self.backs or self.turns or self.events)

    def grant_back(self) -> bool:
        """Wake the first take-back still waiting (one cancelled meanwhile is skipped); False if none is."""
        backs = self.backs
        while backs:
            future = backs.popleft()
            if not future.done():
                future.set_result(None)
                return True
        return False

    def grant_next(self, room: bool) -> int:
        """Wake the first waiter still waiting: a take-back (:data:`_BACK`; it needs no room in the total, it
        never left it), else, if there is ``room``, a turn or an event (:data:`_NEW`); :data:`_NONE`."""
        if self.grant_back():
            return _BACK
        while room and (self.turns or self.events):
            future = (self.turns or self.events).popleft()
            if not future.done():
                future.set_result(None)
                return _NEW
        return _NONE

    def remove(self, future: asyncio.Future[None]) -> None:
        for queue in (self.backs, self.turns, self.events):
            with contextlib.suppress(ValueError):
                queue.remove(future)


class Admission:
    """Fair admission of a tenant's work: at most ``per_tenant`` units in flight per API key's channel and
    ``total`` over all, and when a slot frees, the tenants waiting take turns (round robin), not first come
    first served. A tenant flooding at its rate limit then queues behind itself, not in front of everyone
    else.

    Two kinds of work take slots: client events (where a request enters, before the handler touches the
    store) and agent turns (the gateway's part of a turn: building the request, an in-process agent's
    answer, the store write and fan-out; not the wait for a remote agent). Within one tenant its turns go
    before its new events (finish what was accepted before accepting more), and a turn is never refused;
    at most ``max_waiting`` events of one tenant wait, the next is refused with 429 (so a flood cannot grow
    memory).

    The share (:meth:`share`) bounds a tenant's work *on the gateway*, not its waits: while a unit only
    waits for its write to be committed (:func:`without_slot`: PostgreSQL's group commit, a batch waiting
    for the WAL flush), it lends its share slot to the tenant's next waiter and keeps its place in the
    tenant's room (:meth:`room`: ``total`` while the tenant is alone, its share otherwise) and in
    ``total``; for what follows the commit (the fan-out) it takes a share slot back
    before anything else of its tenant. So a lone key is not held to ``per_tenant`` round trips per commit
    time, and ``total`` still bounds everything a process has under way (what keeps a loop's queue, and
    the broker's delay, short).
    """

    ACTIVE_WINDOW = 1.0
    """Seconds after its last admitted unit that a tenant counts as active (for the shares)."""

    def __init__(self, per_tenant: int, total: int, max_waiting: int = 1000) -> None:
        self.per_tenant = per_tenant
        self.total = total
        self.max_waiting = max_waiting
        self.in_flight: dict[str, int] = {}
        """Each tenant's units at work on the gateway (holding a share slot; at most :meth:`share`)."""
        self.running = 0
        """Units under way over all tenants (at most ``total``): those at work and those lent out."""
        self.lent: dict[str, int] = {}
        """Each tenant's units waiting on their commit without a share slot (:func:`without_slot`)."""
        self._waiting: dict[str, _Line] = {}
        """Tenants with waiters, in turn order (dicts keep insertion order)."""
        self._seen: dict[str, float] = {}
        """Each tenant's last admission (``time.monotonic()``), for :attr:`active`."""
        self.active = 1
        """Tenants active within :attr:`ACTIVE_WINDOW` (recounted at most every 0.1 s)."""
        self._counted = 0.0

    @property
    def enabled(self) -> bool:
        return self.per_tenant > 0 and self.total > 0

    def share(self) -> int:
        """What one tenant may have in flight now: ``per_tenant`` while it is alone, divided among the
        active tenants otherwise (at least 1). Every unit in flight lengthens every other tenant's wait (on
        the event loop, at the store), so a flooding tenant keeps its full share only when nobody else is
        there to wait behind it."""
        return max(1, self.per_tenant // self.active) if self.active > 1 else self.per_tenant

    def room(self) -> int:
        """What one tenant may have under way now, at work and waiting on commits: ``total`` while it is
        alone (work-conserving: nobody waits behind its commits), its :meth:`share` otherwise (as if it
        held its slots through its commits: another tenant's writes queue behind no more of its own)."""
        return self.share() if self.active > 1 else self.total

    def _free(self, tenant: str) -> bool:
        at_work = self.in_flight.get(tenant, 0)
        return (
            self.running < self.total
            and at_work < self.share()
            and at_work + self.lent.get(tenant, 0) < self.room()
        )

    def _room_for(self, tenant: str) -> bool:
        return self.running < self.total and (
            self.in_flight.get(tenant, 0) + self.lent.get(tenant, 0) < self.room()
        )

    def _unlend(self, tenant: str) -> None:
        left = self.lent[tenant] - 1
        if left:
            self.lent[tenant] = left
        else:
            del self.lent[tenant]

    def _grant(self, tenant: str) -> None:
        self.running += 1
        self._grant_back(tenant)

    def _grant_back(self, tenant: str) -> None:
        self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1
        now = time.monotonic()
        self._seen[tenant] = now
        if now - self._counted > 0.1:
            self._recount(now)

    def _recount(self, now: float) -> None:
        horizon = now - self.ACTIVE_WINDOW
        for tenant in [t for t, seen in self._seen.items() if seen < horizon]:
            del self._seen[tenant]
        self.active = max(1, len(self._seen))
        self._counted = now

    def slot(self, tenant: str, *, turn: bool = False) -> _Slot:
        """``async with admission.slot(tenant)``: hold one of ``tenant``'s slots; ``turn``: for an agent turn
        (ahead of the tenant's waiting events, never refused). Entered without suspending when a slot is
        free (a plain class, not a generator: this is on every message's path)."""
        return _Slot(self, tenant, turn) if self.enabled else _FREE

    def _enter(self, tenant: str, turn: bool) -> tuple[_Line, asyncio.Future[None]] | None:
        """Take a slot now (None), or queue for one: the future resolves when the slot is granted."""
        if self._free(tenant) and tenant not in self._waiting:
            self._grant(tenant)
            return None
        line = self._waiting.get(tenant)
        if line is None:
            line = self._waiting[tenant] = _Line()
        queue = line.turns if turn else line.events
        if not turn and len(queue) >= self.max_waiting:
            if not line:
                del self._waiting[tenant]
            raise RateLimitError(429, "too many requests in flight for this key; retry", retry_after=0.1)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(future)
        return line, future

    def _enter_back(self, tenant: str) -> tuple[_Line, asyncio.Future[None]] | None:
        """A lent unit's share slot back (its place in the total it kept): now (None), or queued first."""
        if self.in_flight.get(tenant, 0) < self.share():
            self._unlend(tenant)
            self._grant_back(tenant)
            return None
        line = self._waiting.get(tenant)
        if line is None:
            line = self._waiting[tenant] = _Line()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        line.backs.append(future)
        return line, future

    async def _wait(self, tenant: str, line: _Line, future: asyncio.Future[None]) -> None:
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(tenant)  # granted as it was cancelled: hand the slot on
            else:
                line.remove(future)
                if not line and self._waiting.get(tenant) is line:
                    del self._waiting[tenant]
            raise

    def _lend(self, tenant: str) -> None:
        """A unit at work starts waiting on its commit: its share slot to the tenant's next waiter."""
        self.lent[tenant] = self.lent.get(tenant, 0) + 1
        self._drop(tenant)
        self._handed_on(tenant)

    def _release(self, tenant: str, *, share: bool = True) -> None:
        """A unit leaves: its place in the total, and its share slot (``share``) unless it was lent out."""
        if share:
            self._drop(tenant)
        else:
            self._unlend(tenant)
        self.running -= 1
        self._handed_on(tenant)

    def _drop(self, tenant: str) -> None:
        left = self.in_flight.get(tenant, 1) - 1
        if left:
            self.in_flight[tenant] = left
        else:
            self.in_flight.pop(tenant, None)

    def _handed_on(self, tenant: str) -> None:
        line = self._waiting.pop(tenant, None)
        if line:
            if line.backs and self.in_flight.get(tenant, 0) < self.share() and line.grant_back():
                self._unlend(tenant)  # its own units coming back from their commits first
                self._grant_back(tenant)
            if line:
                self._waiting[tenant] = line  # it just had its turn: the others' first
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant freed slots to waiting tenants in turn: each tenant visited goes to the back of the line
        (those not reached, when the slots ran out, keep their places ahead of it)."""
        waiting = self._waiting
        if not waiting or self.running >= self.total:
            return
        share = self.share()
        in_flight = self.in_flight
        visited = 0
        touched: list[str] = []
        tenants = list(waiting.items())
        for tenant, line in tenants:
            if self.running >= self.total:
                break
            visited += 1
            if in_flight.get(tenant, 0) < share:
                touched.append(tenant)
                granted = line.grant_next(self._room_for(tenant))
                if granted == _NEW:
                    self._grant(tenant)
                    share = self.share()  # a grant may recount the active tenants
                elif granted == _BACK:
                    self._unlend(tenant)
                    self._grant_back(tenant)
        if visited < len(tenants):  # the visited ones, in order, behind those not reached
            for tenant, _ in tenants[:visited]:
                line = waiting.pop(tenant)
                if line:
                    waiting[tenant] = line
        else:  # every tenant visited: the order stays; a line emptied by a grant goes
            for tenant in touched:
                if not waiting[tenant]:
                    del waiting[tenant]


_HELD, _LENT, _DONE = 1, 2, 3

_holding: ContextVar[_Slot | None] = ContextVar("captivate_admission_slot", default=None)
"""The slot the running unit of work holds (what :func:`without_slot` lends out)."""


class _Slot:
    """One admission slot, as an async context manager."""

    __slots__ = ("_admission", "_outer", "_owner", "_state", "_tenant", "_turn")

    def __init__(self, admission: Admission, tenant: str, turn: bool) -> None:
        self._admission, self._tenant, self._turn = admission, tenant, turn
        self._state = 0
        self._owner: asyncio.Task[Any] | None = None
        self._outer: _Slot | None = None

    async def __aenter__(self) -> None:
        queued = self._admission._enter(self._tenant, self._turn)
        if queued is not None:
            await self._admission._wait(self._tenant, *queued)
        self._state = _HELD
        self._owner = asyncio.current_task()
        self._outer = _holding.get()
        _holding.set(self)

    async def __aexit__(self, *exc: object) -> None:
        # set, not reset with a token: an eagerly started turn (eager.py) enters in one context and may
        # leave in its continuation task's, a copy (AgentRunner.schedule gives it a context of its own)
        _holding.set(self._outer)
        self._outer = None  # no chain of finished slots
        state, self._state = self._state, _DONE
        if state == _HELD:
            self._admission._release(self._tenant)
        elif state == _LENT:  # failed or cancelled while waiting on its commit
            self._admission._release(self._tenant, share=False)

    def lend(self) -> bool:
        """Lend the share slot out while the unit waits (True), if this task holds it (a task started from
        within a unit inherits its context, not its slot)."""
        if self._state != _HELD or self._owner is not asyncio.current_task():
            return False
        self._state = _LENT
        self._admission._lend(self._tenant)
        return True

    async def take_back(self) -> None:
        """A share slot again after :meth:`lend`, before the tenant's other waiters; the unit may be in
        another task by now (an eager turn's continuation)."""
        if self._state != _LENT:
            return
        admission = self._admission
        queued = admission._enter_back(self._tenant)
        if queued is not None:
            line, future = queued
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._state = _HELD  # granted as it was cancelled: __aexit__ hands it on
                else:
                    line.remove(future)
                    if not line and admission._waiting.get(self._tenant) is line:
                        del admission._waiting[self._tenant]
                raise
        self._state = _HELD
        self._owner = asyncio.current_task()


async def without_slot(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` -- a wait on I/O only, such as a write's commit -- without holding the caller's
    share slot (if it holds one; it keeps its place in the total), then take a share slot back for the rest
    of the unit, ahead of its tenant's waiting work. A unit that fails or is cancelled while waiting does
    not take one back (it only unwinds; leaving its ``async with`` gives its place up)."""
    slot = _holding.get()
    if slot is None or not slot.lend():
        return await awaitable
    result = await awaitable
    await slot.take_back()
    return result


class _Free:
    """The slot of a disabled admission: nothing to hold."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_FREE: Any = _Free()
