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
from dataclasses import dataclass, field
from typing import Any

from ..errors import PayloadTooLargeError, RateLimitError


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
        """Raise RateLimitError (429, with ``retry_after``) when the socket or the key is over its rate."""
        wait = self.per_key.take(channel_id)
        if not wait and socket_id is not None:
            wait = self.per_socket.take(socket_id)
        if wait:
            raise RateLimitError(429, f"rate limit exceeded; retry in {wait:.2f} s", retry_after=wait)


class _Line:
    """One tenant's waiters: its agent turns (work it was already promised) before its new events."""

    __slots__ = ("events", "turns")

    def __init__(self) -> None:
        self.turns: deque[asyncio.Future[None]] = deque()
        self.events: deque[asyncio.Future[None]] = deque()

    def __bool__(self) -> bool:
        return bool(self.turns or self.events)

    def grant_next(self) -> bool:
        """Wake the first waiter still waiting (one cancelled meanwhile is skipped); False if none is."""
        while self:
            future = (self.turns or self.events).popleft()
            if not future.done():
                future.set_result(None)
                return True
        return False

    def remove(self, future: asyncio.Future[None]) -> None:
        for queue in (self.turns, self.events):
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
    """

    ACTIVE_WINDOW = 1.0
    """Seconds after its last admitted unit that a tenant counts as active (for the shares)."""

    def __init__(self, per_tenant: int, total: int, max_waiting: int = 1000) -> None:
        self.per_tenant = per_tenant
        self.total = total
        self.max_waiting = max_waiting
        self.in_flight: dict[str, int] = {}
        self.running = 0
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

    def _free(self, tenant: str) -> bool:
        return self.running < self.total and self.in_flight.get(tenant, 0) < self.share()

    def _grant(self, tenant: str) -> None:
        self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1
        self.running += 1
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

    def _release(self, tenant: str) -> None:
        left = self.in_flight.get(tenant, 1) - 1
        if left:
            self.in_flight[tenant] = left
        else:
            self.in_flight.pop(tenant, None)
        self.running -= 1
        line = self._waiting.pop(tenant, None)
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
                if line.grant_next():
                    self._grant(tenant)
                    share = self.share()  # a grant may recount the active tenants
        if visited < len(tenants):  # the visited ones, in order, behind those not reached
            for tenant, _ in tenants[:visited]:
                line = waiting.pop(tenant)
                if line:
                    waiting[tenant] = line
        else:  # every tenant visited: the order stays; a line emptied by a grant goes
            for tenant in touched:
                if not waiting[tenant]:
                    del waiting[tenant]


class _Slot:
    """One admission slot, as an async context manager."""

    __slots__ = ("_admission", "_tenant", "_turn")

    def __init__(self, admission: Admission, tenant: str, turn: bool) -> None:
        self._admission, self._tenant, self._turn = admission, tenant, turn

    async def __aenter__(self) -> None:
        queued = self._admission._enter(self._tenant, self._turn)
        if queued is not None:
            await self._admission._wait(self._tenant, *queued)

    async def __aexit__(self, *exc: object) -> None:
        self._admission._release(self._tenant)


class _Free:
    """The slot of a disabled admission: nothing to hold."""

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


_FREE: Any = _Free()
