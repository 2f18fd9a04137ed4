"""Per-conversation delivery on Redis: a process hears a conversation only while one of its sockets is
bound to it, and nothing is lost or doubled across the moment it starts to (the bind race: what another
process publishes between the bind and Redis's subscription is filled from the store).

Two real gateway processes on the real PostgreSQL and a ``redis-server`` of this module's own; the
broker-level tests use :class:`RedisBroker` directly.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from captivate_chat_api.server.broker.redis import RedisBroker
from captivate_chat_api.server.broker.relay import Relay
from captivate_chat_api.server.connection import Connection
from captivate_chat_api.server.hub import Hub
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import NewEvent
from captivate_chat_api.server.store.postgres import PostgresStore
from captivate_chat_api.server.timeline import Timeline
from harness.cluster import RedisServer, start_gateways
from harness.gateway import GatewayProcess, new_key
from harness.wire import MESSAGE_PATH, WireClient, envelope, tls

CONVERSATIONS = 12
POSTS = 20


@pytest.fixture(scope="module")
def gateways(
    postgres_schema: str, redis_server: RedisServer
) -> Iterator[tuple[GatewayProcess, GatewayProcess, str]]:
    key = new_key()
    a, b = start_gateways(postgres_schema, [key], redis_server.url, 2)
    try:
        yield a, b, key
    finally:
        a.stop()
        b.stop()


async def seqs_until(
    client: WireClient, conversation_id: str, last_seq: int, timeout: float = 20
) -> list[int]:
    """The ``seq`` of each event frame of the conversation until ``last_seq``; then half a second more, so
    that a duplicate would be seen too."""
    seen: list[int] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    settle: float | None = None
    while True:
        if settle is None and seen and seen[-1] >= last_seq:
            settle = loop.time() + 0.5
        end = settle if settle is not None else deadline
        remaining = end - loop.time()
        if remaining <= 0:
            assert settle is not None, f"seq {last_seq} never arrived; got {seen}"
            return seen
        try:
            frame = await client.recv(remaining)
        except TimeoutError:
            continue
        payload = frame["event"]["event_payload"]
        if payload.get("conversation_id") == conversation_id and isinstance(payload.get("seq"), int):
            seen.append(payload["seq"])


async def test_a_socket_bound_while_another_process_writes_misses_nothing_and_gets_nothing_twice(
    gateways: tuple[GatewayProcess, GatewayProcess, str],
) -> None:
    """Conversations written through A (a user message and the agent's reply, back to back); meanwhile a
    socket on B binds to each, at a random moment: half by ``subscribe`` from seq 0, half by sending a
    message of its own. Each gets every event from where it started to the end, once and in order."""
    a, b, key = gateways
    headers = {"x-api-key": key}
    async with httpx.AsyncClient(verify=tls(), base_url=a.http_url, headers=headers, timeout=10) as writer:

        async def post(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
            response = await writer.post(MESSAGE_PATH, json=envelope(event_type, payload))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            return body

        cids = [
            (await post("conversation_start", {"userId": f"u{n}"}))["conversation_id"]
            for n in range(CONVERSATIONS)
        ]

        async def write(cid: str) -> None:
            for n in range(POSTS):
                await post(
                    "user_message",
                    {
                        "conversation_id": cid,
                        "content": {"type": "text", "text": f"w{n}"},
                        "client_msg_id": f"w{n}",
                    },
                )

        clients = [WireClient(b.http_url, b.ws_url, key) for _ in cids]
        for client in clients:
            await client.connect()
        firsts: dict[str, int] = {}

        async def bind(index: int, cid: str, client: WireClient) -> None:
            await asyncio.sleep(random.uniform(0.05, 0.6))
            if index % 2 == 0:
                await client.ok("subscribe", {"conversation_id": cid, "after_seq": 0})
                firsts[cid] = 1
            else:
                said = await client.ok(
                    "user_message",
                    {
                        "conversation_id": cid,
                        "content": {"type": "text", "text": "mine"},
                        "client_msg_id": "mine",
                    },
                )
                firsts[cid] = said["seq"]  # bound just before its own message: at the latest from there

        try:
            await asyncio.gather(
                *(write(cid) for cid in cids),
                *(bind(i, cid, c) for i, (cid, c) in enumerate(zip(cids, clients))),
            )
            # every post has its reply (a user message and a bot_message each): the log is complete
            async with WireClient(a.http_url, a.ws_url, key) as probe:
                lasts = {}
                for index, cid in enumerate(cids):
                    expected = 2 * POSTS + (0 if index % 2 == 0 else 2)  # + its own message and reply
                    for _ in range(200):
                        last = (await probe.ok("subscribe", {"conversation_id": cid}))["last_seq"]
                        if last >= expected:
                            break
                        await asyncio.sleep(0.05)
                    assert last == expected, (cid, last, expected)
                    lasts[cid] = last
            seen = await asyncio.gather(*(seqs_until(c, cid, lasts[cid]) for cid, c in zip(cids, clients)))
        finally:
            for client in clients:
                await client.close()
    for index, (cid, got) in enumerate(zip(cids, seen)):
        assert len(got) == len(set(got)), f"conversation {index}: a seq twice: {got}"
        assert got == sorted(got), f"conversation {index}: out of order: {got}"
        start = got[0]
        assert start <= firsts[cid], f"conversation {index}: began after its own message: {got}"
        assert got == list(range(start, lasts[cid] + 1)), f"conversation {index}: lost events: {got}"
        if index % 2 == 0:
            assert start == 1, "subscribe from 0 replays the whole log"


async def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_conversation_is_heard_only_by_its_watchers_and_never_across_deployments(
    redis_server: RedisServer,
) -> None:
    heard: dict[str, list[dict[str, Any]]] = {"a1": [], "a2": [], "a3": [], "b1": []}
    watching: dict[str, list[str]] = {name: [] for name in heard}

    async def resync() -> None:
        return None

    brokers = {
        "a1": RedisBroker(redis_server.url, "deployment-a"),
        "a2": RedisBroker(redis_server.url, "deployment-a"),
        "a3": RedisBroker(redis_server.url, "deployment-a"),
        "b1": RedisBroker(redis_server.url, "deployment-b"),
    }
    for name, broker in brokers.items():
        await broker.start(
            lambda message, name=name: heard[name].append(message),
            resync,
            lambda cid, name=name: watching[name].append(cid),
        )
    try:
        brokers["a2"].watch("same-id")
        brokers["b1"].watch("same-id")  # the same conversation id in another deployment
        await wait_for(lambda: watching["a2"] == ["same-id"] and watching["b1"] == ["same-id"])
        for n in range(200):
            brokers["a1"].publish({"t": "event", "cid": "same-id", "seq": n + 1, "frame": f"a{n}"}, "same-id")
            brokers["a1"].publish({"t": "event", "cid": "other", "seq": n + 1, "frame": f"o{n}"}, "other")
        await wait_for(lambda: len(heard["a2"]) >= 200)
        brokers["a2"].unwatch("same-id")
        await asyncio.sleep(0.2)
        brokers["a1"].publish({"t": "event", "cid": "same-id", "seq": 201, "frame": "late"}, "same-id")
        brokers["a1"].publish({"t": "unbind", "cid": "x"})  # to every process of the deployment
        await wait_for(lambda: len(heard["a3"]) == 1)
        await asyncio.sleep(0.2)  # anything misrouted would have arrived by now
    finally:
        for broker in brokers.values():
            await broker.close()
    assert [m["frame"] for m in heard["a2"][:200]] == [f"a{n}" for n in range(200)], "in order, only its own"
    assert [m["t"] for m in heard["a2"][200:]] == ["unbind"], "nothing after it stopped watching"
    assert [m["t"] for m in heard["a3"]] == ["unbind"], "a process watching nothing hears no conversation"
    assert heard["b1"] == [], "0 cross-deliveries between deployments"
    assert heard["a1"] == [], "a process never handles its own messages"


class Node:
    """One process's hub, timeline and relay on a real Redis (the data path of a gateway, in this process)."""

    def __init__(self, database: str, redis_url: str, namespace: str) -> None:
        self.store = PostgresStore(database, max_size=2)
        self.hub = Hub(max_outbound_frame_bytes=128 * 1024, message_link_base=lambda: "http://test")
        self.timeline = Timeline(self.store, self.hub)
        self.relay = Relay(self.hub, self.store, RedisBroker(redis_url, namespace))

    async def __aenter__(self) -> Node:  # noqa: PYI034 -- a test fixture, never subclassed
        await self.store.open()
        await self.relay.start(self.timeline.subscribe)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.relay.close()
        await self.store.close()


class Recorder:
    def __init__(self) -> None:
        self.seqs: list[int] = []

    async def send_text(self, data: str) -> None:
        self.seqs.append(json.loads(data)["event"]["event_payload"]["seq"])

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass


async def test_an_event_published_before_the_subscription_took_effect_is_filled_from_the_store(
    postgres_schema: str, redis_server: RedisServer
) -> None:
    """The bind race, forced: A publishes the conversation's last event in the same loop turn as B binds a
    socket to it, so A's PUBLISH reaches Redis before B's SUBSCRIBE and B does not hear it. No later event
    will show the gap: B's socket gets it because B fills from the store once its subscription is in effect."""
    namespace = f"race-{uuid.uuid4().hex[:8]}"
    async with (
        Node(postgres_schema, redis_server.url, namespace) as a,
        Node(postgres_schema, redis_server.url, namespace) as b,
    ):
        key = generate_key()
        channel = await a.store.create_channel_with_key("c", hash_key(key), key[:8])
        for round_ in range(5):
            cid = f"race-{round_}-{uuid.uuid4().hex[:6]}"
            await a.store.create_conversation(channel.id, cid, "u", {}, {}, {})
            recorder = Recorder()
            socket = Connection(recorder, channel, queue_frames=100)
            b.hub.add(socket)
            socket.start()
            stored = await a.store.append_events(
                channel.id, cid, [NewEvent("bot_message", {"content": "last"}, "bot", "m1")]
            )
            a.timeline.publish(stored)  # queued for Redis first ...
            b.hub.bind(cid, socket, 0)  # ... then B starts to watch the conversation
            await wait_for(lambda recorder=recorder: recorder.seqs == [1], timeout=5)
            await asyncio.sleep(0.2)
            assert recorder.seqs == [1], "once"
