"""The Redis broker's publishing connection writes commands without waiting for their replies, which a task
of its own reads (broker/redis.py): Redis's refusals are counted, and a link Redis closes is marked broken
(the sender then opens another). A real redis-server."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from captivate_chat_api.server.broker.redis import _PublishLink
from harness.cluster import RedisServer


async def until(predicate: object, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():  # type: ignore[operator]
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_replies_are_counted_and_a_closed_link_is_broken(redis_server: RedisServer) -> None:
    client = aioredis.from_url(redis_server.url)
    listener = client.pubsub()
    await listener.subscribe("pl:a")
    link = await _PublishLink.open(client)
    try:
        await link.write([("PUBLISH", "pl:a", "one"), ("GET", "k", "extra"), ("PUBLISH", "pl:a", "two")])
        heard = []
        while len(heard) < 2:
            item = await listener.get_message(ignore_subscribe_messages=True, timeout=5)
            if item is not None:
                heard.append(item["data"])
        assert heard == [b"one", b"two"]
        await until(lambda: link.errors == 1)  # GET with two arguments: Redis's -ERR, counted
        assert not link.broken
        await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        await until(lambda: link.broken)
    finally:
        await link.close()
        await listener.aclose()  # type: ignore[no-untyped-call]
        await client.aclose()
