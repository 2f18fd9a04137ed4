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
from collections.abc import AsyncIterator
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


class Admission:
    """Fair admission of client events: at most ``per_tenant`` in flight per API key's channel and ``total``
    over all, and when a slot frees, the tenants waiting take turns (round robin), not first come first
    served. A tenant flooding at its rate limit then queues behind itself, not in front of everyone else.

    Applied where a request enters (routes), before the handler touches the store; at most ``max_waiting``
    events of one tenant wait, the next is refused with 429 (so a flood cannot grow memory).
    """

    def __init__(self, per_tenant: int, total: int, max_waiting: int = 1000) -> None:
        self.per_tenant = per_tenant
        self.total = total
        self.max_waiting = max_waiting
        self.in_flight: dict[str, int] = {}
        self.running = 0
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}
        """Tenants with waiters, in turn order (dicts keep insertion order)."""

    @property
    def enabled(self) -> bool:
        return self.per_tenant > 0 and self.total > 0

    def _free(self, tenant: str) -> bool:
        return self.running < self.total and self.in_flight.get(tenant, 0) < self.per_tenant

    def _grant(self, tenant: str) -> None:
        self.in_flight[tenant] = self.in_flight.get(tenant, 0) + 1
        self.running += 1

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        if not self.enabled:
            yield
            return
        if self._free(tenant) and tenant not in self._waiting:
            self._grant(tenant)
        else:
            queue = self._waiting.setdefault(tenant, deque())
            if len(queue) >= self.max_waiting:
                if not queue:
                    del self._waiting[tenant]
                raise RateLimitError(429, "too many requests in flight for this key; retry", retry_after=0.1)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue.append(future)
            try:
                await future
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release(tenant)  # granted as it was cancelled: hand the slot on
                else:
                    with contextlib.suppress(ValueError):
                        queue.remove(future)
                    if not queue and self._waiting.get(tenant) is queue:
                        del self._waiting[tenant]
                raise
        try:
            yield
        finally:
            self._release(tenant)

    def _release(self, tenant: str) -> None:
        left = self.in_flight.get(tenant, 1) - 1
        if left:
            self.in_flight[tenant] = left
        else:
            self.in_flight.pop(tenant, None)
        self.running -= 1
        queue = self._waiting.pop(tenant, None)
        if queue:
            self._waiting[tenant] = queue  # it just had its turn: the others' first
        self._dispatch()

    def _dispatch(self) -> None:
        """Grant freed slots to waiting tenants in turn: each granted tenant goes to the back of the line."""
        for tenant in list(self._waiting):
            if self.running >= self.total:
                return
            queue = self._waiting.pop(tenant)
            if self.in_flight.get(tenant, 0) < self.per_tenant and queue:
                self._grant(tenant)
                queue.popleft().set_result(None)
            if queue:
                self._waiting[tenant] = queue  # to the back of the line
