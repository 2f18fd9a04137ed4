"""One lock per key (a conversation id), held by at most one coroutine at a time, granted in FIFO order;
a key is forgotten as soon as nobody holds or awaits it.

The state is one dict entry per held key (its waiters), so taking a free lock costs no allocation of a
lock object, no weak reference and no future: this sits on every agent turn's path.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class KeyedLocks:
    def __init__(self) -> None:
        self._held: dict[str, deque[asyncio.Future[None]]] = {}
        """Held keys, each with the coroutines waiting for it (in order)."""

    def __call__(self, key: str) -> KeyLock:
        return KeyLock(self, key)

    def __len__(self) -> int:
        return len(self._held)

    def _release(self, key: str) -> None:
        waiters = self._held[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the lock passes to it (still held)
                return
        del self._held[key]


class KeyLock:
    """``async with locks(key)``; ``locked()`` while someone holds it."""

    __slots__ = ("_key", "_locks")

    def __init__(self, locks: KeyedLocks, key: str) -> None:
        self._locks, self._key = locks, key

    def locked(self) -> bool:
        return self._key in self._locks._held

    async def __aenter__(self) -> None:
        held = self._locks._held
        waiters = held.get(self._key)
        if waiters is None:
            held[self._key] = deque()
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._locks._release(self._key)  # handed the lock as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # a release may have dropped it already
                    waiters.remove(waiter)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._locks._release(self._key)
