"""API-key authentication: key -> channel (tenant), with a short cache so hot paths skip the store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from ..protocol import ProtocolError
from .keys import hash_key
from .store import AgentTokenInfo, Channel, Store

T = TypeVar("T")

HUMAN_ROLES = ("human", "supervisor")
"""Token roles of a live-chat agent: ``supervisor`` may also reply in and end other agents' live chats."""

DIGESTS = 4096
"""How many presented keys and tokens keep their hash (:meth:`Authenticator.digest`); past it, the map is
emptied and refilled (a flood of wrong keys costs a hash each, as without the map)."""

CACHE_SECONDS = 2.0
"""How long a key's answer is reused by default (setting ``auth_cache_seconds``); a revoked key stops
working within this time."""


def single_credential(values: list[str], what: str) -> str | None:
    """The one credential a request carries, or None. Two different values (``?apiKey=a&apiKey=b``, two
    ``x-api-key`` headers, a header and a query that disagree) are ambiguous: refused (400), because
    which one "wins" differs between proxies, frameworks and this gateway."""
    distinct = set(values)
    if len(distinct) > 1:
        raise ProtocolError(400, f"ambiguous credential: more than one {what} given")
    return values[0] if values else None


class Authenticator:
    def __init__(self, store: Store, cache_seconds: float = CACHE_SECONDS) -> None:
        self._store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Channel | None]] = {}
        self._tokens: dict[tuple[str, str], tuple[float, tuple[Channel, AgentTokenInfo] | None]] = {}
        self._digests: dict[str, str] = {}
        """A presented key or token -> its SHA-256 (what the store and the answer caches are keyed by): a
        request with a known key hashes nothing. Bounded by :data:`DIGESTS`."""
        self._lookups: dict[Hashable, asyncio.Task[Any]] = {}
        """Store lookups under way: requests that miss the cache for the same key at once share one (when a
        busy key's entry expires, a thousand requests in flight make one query, not a thousand)."""

    async def _lookup(self, key: Hashable, query: Callable[[], Awaitable[T]]) -> T:
        task = self._lookups.get(key)
        if task is None:
            task = asyncio.ensure_future(query())
            self._lookups[key] = task
            task.add_done_callback(lambda _: self._lookups.pop(key, None))
        # shielded: a waiter that is cancelled (its client left) does not cancel the others' lookup
        result: T = await asyncio.shield(task)
        return result

    def digest(self, secret: str) -> str:
        """``hash_key(secret)``, remembered for the next request that presents it."""
        digests = self._digests
        digest = digests.get(secret)
        if digest is None:
            if len(digests) >= DIGESTS:
                digests.clear()
            digest = digests[secret] = hash_key(secret)
        return digest

    async def channel(self, api_key: str | None) -> Channel | None:
        if not api_key or len(api_key) > 512:
            return None
        digest = self.digest(api_key)
        now = time.monotonic()
        cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            return cached[1]
        channel = await self._lookup(digest, lambda: self._store.channel_for_key_hash(digest))
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + self.cache_seconds, channel)
        return channel

    async def agent_token(self, token: str | None, role: str) -> tuple[Channel, AgentTokenInfo] | None:
        """The channel and token record of an active agent token with that role (``push`` or ``human``)."""
        if not token or len(token) > 512:
            return None
        digest = self.digest(token)
        now = time.monotonic()
        cached = self._tokens.get((digest, role))
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await self._lookup((digest, role), lambda: self._store.channel_for_agent_token(digest, role))
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[(digest, role)] = (now + self.cache_seconds, found)
        return found

    async def human_agent(self, token: str | None) -> tuple[Channel, AgentTokenInfo] | None:
        """The channel and token record of an active live-chat agent token (``human`` or ``supervisor``)."""
        for role in HUMAN_ROLES:
            found = await self.agent_token(token, role)
            if found is not None:
                return found
        return None

    def forget(self, digest: str) -> None:
        """Drop a key's or token's cached answer (it was found revoked)."""
        self._cache.pop(digest, None)
        for key in [k for k in self._tokens if k[0] == digest]:
            self._tokens.pop(key, None)
