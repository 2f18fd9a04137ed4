"""Scale-out isolation: two deployments on one Redis never hear each other (every Redis name carries the
deployment's namespace); the gateways of one deployment do. A real redis-server of this module's own."""

from __future__ import annotations

import asyncio
from typing import Any

from captivate_chat_api.server.broker import default_namespace
from captivate_chat_api.server.broker.redis import RedisBroker
from harness.cluster import RedisServer


def test_the_default_namespace_follows_the_database_and_never_shows_the_password() -> None:
    one = default_namespace("postgresql://app:secret@db:5432/chat?schema=tenant_a")
    assert one == default_namespace("postgresql://app:other-secret@db:5432/chat?schema=tenant_a"), (
        "same deployment"
    )
    assert one != default_namespace("postgresql://app:secret@db:5432/chat?schema=tenant_b")
    assert one != default_namespace("postgresql://app:secret@db2:5432/chat?schema=tenant_a")
    assert "secret" not in one and one.startswith("captivate-chat:")


async def test_two_deployments_on_one_redis_cross_deliver_nothing(redis_server: RedisServer) -> None:
    heard: dict[str, list[dict[str, Any]]] = {"a1": [], "a2": [], "b1": []}

    async def resync() -> None:
        return None

    brokers = {
        "a1": RedisBroker(redis_server.url, "deployment-a"),
        "a2": RedisBroker(redis_server.url, "deployment-a"),
        "b1": RedisBroker(redis_server.url, "deployment-b"),
    }
    for name, broker in brokers.items():
        await broker.start(lambda message, name=name: heard[name].append(message), resync)
    try:
        for n in range(200):
            brokers["a1"].publish({"t": "event", "cid": "same-id", "seq": n + 1, "frame": f"a{n}"})
            brokers["b1"].publish({"t": "event", "cid": "same-id", "seq": n + 1, "frame": f"b{n}"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (len(heard["a2"]) < 200) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
    finally:
        for broker in brokers.values():
            await broker.close()
    assert [m["frame"] for m in heard["a2"]] == [f"a{n}" for n in range(200)], (
        "the same deployment hears all, in order"
    )
    assert heard["b1"] == [], "0 cross-deliveries from deployment A to B"
    assert heard["a1"] == [], "a process never handles its own messages"
    assert all(m["node"] == brokers["a1"].node for m in heard["a2"])
