"""Rate limits: token buckets per socket and per API key (channel).

A bucket holds ``burst`` tokens and refills at ``rate`` per second; each client event takes one. An event
over the limit is refused (WebSocket ``general_error`` 429, HTTP 429 with ``Retry-After``) and nothing of
it is stored.
"""

from __future__ import annotations

import json
import math
import time
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

    def __init__(self, socket_rate: float, socket_burst: float, key_rate: float, key_burst: float) -> None:
        self.per_socket = RateLimiter(socket_rate, socket_burst)
        self.per_key = RateLimiter(key_rate, key_burst)

    def check(self, channel_id: str, socket_id: str | None) -> None:
        """Raise RateLimitError (429, with ``retry_after``) when the socket or the key is over its rate."""
        wait = self.per_key.take(channel_id)
        if not wait and socket_id is not None:
            wait = self.per_socket.take(socket_id)
        if wait:
            raise RateLimitError(429, f"rate limit exceeded; retry in {wait:.2f} s", retry_after=wait)
