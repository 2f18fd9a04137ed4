"""The authenticator on a real SQLite store: requests that miss the key cache at once share one lookup."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from captivate_chat_api.server.auth import Authenticator
from captivate_chat_api.server.keys import display_prefix, generate_key, hash_key
from captivate_chat_api.server.store import Store, store_from_url


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = store_from_url(f"sqlite:///{tmp_path / 'auth.db'}")
    await opened.open()
    yield opened
    await opened.close()


def count_lookups(store: Store, fail_first: bool = False) -> list[int]:
    """Counts the store's key lookups (the real method runs; the first may be made to fail, as an outage)."""
    calls = [0]
    real = store.channel_for_key_hash

    async def counted(key_hash: str) -> Any:
        calls[0] += 1
        await asyncio.sleep(0.01)  # the lookup is under way while the others arrive
        if fail_first and calls[0] == 1:
            raise ConnectionError("store unreachable")
        return await real(key_hash)

    store.channel_for_key_hash = counted  # type: ignore[method-assign]
    return calls


async def test_a_thousand_requests_that_miss_the_cache_make_one_lookup(store: Store) -> None:
    key = generate_key()
    channel = await store.create_channel_with_key("acme", hash_key(key), display_prefix(key))
    calls = count_lookups(store)
    auth = Authenticator(store, cache_seconds=60)
    found = await asyncio.gather(*(auth.channel(key) for _ in range(1000)))
    assert calls[0] == 1
    assert {c.id if c else None for c in found} == {channel.id}
    assert await auth.channel(generate_key()) is None  # another key: its own lookup, its own answer
    assert calls[0] == 2


async def test_a_failed_lookup_fails_its_waiters_and_the_next_request_asks_again(store: Store) -> None:
    key = generate_key()
    channel = await store.create_channel_with_key("acme", hash_key(key), display_prefix(key))
    calls = count_lookups(store, fail_first=True)
    auth = Authenticator(store, cache_seconds=60)
    outcomes = await asyncio.gather(*(auth.channel(key) for _ in range(50)), return_exceptions=True)
    assert calls[0] == 1 and all(isinstance(o, ConnectionError) for o in outcomes)
    again = await auth.channel(key)
    assert again is not None and again.id == channel.id and calls[0] == 2


async def test_a_cancelled_waiter_does_not_cancel_the_others(store: Store) -> None:
    key = generate_key()
    channel = await store.create_channel_with_key("acme", hash_key(key), display_prefix(key))
    calls = count_lookups(store)
    auth = Authenticator(store, cache_seconds=60)
    leaving = asyncio.create_task(auth.channel(key))
    staying = asyncio.create_task(auth.channel(key))
    await asyncio.sleep(0)
    leaving.cancel()
    found = await staying
    assert found is not None and found.id == channel.id and calls[0] == 1
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_a_known_key_is_not_hashed_again_and_the_map_stays_bounded(store: Store) -> None:
    """The presented key's hash is remembered (a request with a known key hashes nothing); the answer
    still expires as before, and a flood of distinct wrong keys never grows the map past its bound."""
    from captivate_chat_api.server import auth as auth_module

    key = generate_key()
    channel = await store.create_channel_with_key("acme", hash_key(key), display_prefix(key))
    calls = count_lookups(store)
    auth = Authenticator(store, cache_seconds=0.05)
    hashed: list[str] = []
    real_hash = auth_module.hash_key

    def counted_hash(secret: str) -> str:
        hashed.append(secret)
        return real_hash(secret)

    auth_module.hash_key = counted_hash  # type: ignore[assignment]
    try:
        for _ in range(100):
            found = await auth.channel(key)
            assert found is not None and found.id == channel.id
        assert hashed == [key] and calls[0] == 1
        await asyncio.sleep(0.1)  # the answer expired: asked again, still without hashing again
        assert (await auth.channel(key)) is not None and calls[0] == 2 and hashed == [key]
        assert auth.digest(key) == hash_key(key)
        for i in range(auth_module.DIGESTS + 10):
            auth.digest(f"cck_wrong_{i:08d}")
        assert len(auth._digests) <= auth_module.DIGESTS
        assert auth.digest(f"cck_wrong_{3:08d}") == hash_key(f"cck_wrong_{3:08d}")
    finally:
        auth_module.hash_key = real_hash  # type: ignore[assignment]
