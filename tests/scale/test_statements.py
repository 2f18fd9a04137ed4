"""A chat round trip on PostgreSQL costs at most 5 statements (the issue's target; 17 round trips before).

Two gateways' data paths (store, hub, timeline, relay, agent runner, handlers), wired as the gateway wires
them, on the real PostgreSQL (a schema of this module's own) and one in-process broker bus: the same as two
processes on Redis, without Redis. Every statement either store sends is counted (asyncpg's query logger
on each of its connections, the pool's and the writer's that batches appends; BEGIN and COMMIT count too)
while user messages with a ``client_msg_id`` make round trips, one at a time (a batch of one): the message
stored, echoed, the demo agent's ``bot_message`` stored and delivered to the socket.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from captivate_chat_api.protocol import parse_envelope
from captivate_chat_api.server.agents.demo import DemoAgent
from captivate_chat_api.server.agents.runner import AgentRunner
from captivate_chat_api.server.auth import Authenticator
from captivate_chat_api.server.broker.memory import MemoryBroker, MemoryBus
from captivate_chat_api.server.broker.relay import Relay
from captivate_chat_api.server.connection import Connection
from captivate_chat_api.server.handlers import Handlers, Request
from captivate_chat_api.server.hub import Hub
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.livechat import LiveChat
from captivate_chat_api.server.store import Channel
from captivate_chat_api.server.store.postgres import PostgresStore
from captivate_chat_api.server.timeline import Timeline

TRIPS = 20
POOL = 4


class Recorder:
    """Our WebSocket seam, keeping the frames it was sent."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def send_text(self, data: str) -> None:
        self.frames.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        pass

    def count(self, event_type: str) -> int:
        return sum(1 for f in self.frames if f["event"]["event_type"] == event_type)


class Node:
    """One gateway process's data path."""

    def __init__(self, database: str, bus: MemoryBus) -> None:
        self.store = PostgresStore(database, max_size=POOL)
        self.hub = Hub(max_outbound_frame_bytes=128 * 1024, message_link_base=lambda: "http://test")
        self.timeline = Timeline(self.store, self.hub)
        self.relay = Relay(self.hub, self.store, MemoryBroker(bus))
        self.runner = AgentRunner(self.timeline, LiveChat(self.timeline), agent=DemoAgent())
        self.handlers = Handlers(self.store, self.hub, self.timeline, self.runner, Authenticator(self.store))
        self.statements: list[str] = []

    async def start(self) -> None:
        # every connection the store opens (its pool's, its writer's) logs each statement it sends
        self.store.query_loggers.append(lambda record: self.statements.append(record.query))
        await self.store.open()
        await self.relay.start(self.timeline.subscribe)

    async def stop(self) -> None:
        await self.runner.cancel()
        await self.relay.close()
        await self.store.close()

    def socket(self, channel: Channel) -> tuple[Connection, Recorder]:
        recorder = Recorder()
        connection = Connection(recorder, channel, queue_frames=10_000)
        self.hub.add(connection)
        connection.start()
        return connection, recorder


def request(channel: Channel, connection: Any, event_type: str, payload: dict[str, Any]) -> Request:
    envelope = parse_envelope({"event": {"event_type": event_type, "event_payload": payload}})
    return Request(channel, "key", envelope, connection, via_websocket=False)


async def round_trips(
    posting: Node, listening: Node, socket_id: str, recorder: Recorder, channel: Channel
) -> float:
    """Statements per round trip over :data:`TRIPS` of them (both nodes' pools); each event names the socket
    by its id, as the HTTP route does (another process's socket: a RemoteSocket)."""

    def connection() -> Any:
        return posting.relay.find_client(socket_id, channel.id)

    started = await posting.handlers.handle(
        request(channel, connection(), "conversation_start", {"userId": "u"})
    )
    cid = started.body["conversation_id"]
    for n in range(2):  # warm: the socket is bound, statements are prepared
        await trip(posting, connection, recorder, channel, cid, f"warm{n}")
    posting.statements.clear()
    listening.statements.clear()
    for n in range(TRIPS):
        await trip(posting, connection, recorder, channel, cid, f"m{n}")
    return (len(posting.statements) + len(listening.statements)) / TRIPS


async def trip(
    node: Node, connection: Any, recorder: Recorder, channel: Channel, cid: str, text: str
) -> None:
    expected = recorder.count("bot_message") + 1
    reply = await node.handlers.handle(
        request(
            channel,
            connection(),
            "user_message",
            {"conversation_id": cid, "content": text, "client_msg_id": text},
        )
    )
    assert reply.after is not None
    reply.after()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while recorder.count("bot_message") < expected:
        assert loop.time() < deadline, "the bot_message did not arrive"
        await asyncio.sleep(0.002)


async def test_a_round_trip_costs_at_most_five_statements(postgres_schema: str) -> None:
    bus = MemoryBus()
    a, b = Node(postgres_schema, bus), Node(postgres_schema, bus)
    await a.start()
    await b.start()
    try:
        key = generate_key()
        channel = await a.store.create_channel_with_key("c", hash_key(key), key[:8])
        # the socket and the posts on one process
        here, recorder = a.socket(channel)
        local = await round_trips(a, b, here.socket_id, recorder, channel)
        # the socket on B, the posts on A (a RemoteSocket there), as with no sticky sessions
        there, far_recorder = b.socket(channel)
        across = await round_trips(a, b, there.socket_id, far_recorder, channel)
        print(f"\nPostgreSQL statements per round trip: {local:.2f} (one process), {across:.2f} (two)")
        assert local <= 5 and across <= 5, (local, across, a.statements[:12])
        assert far_recorder.count("user_message") == TRIPS + 2, "each echo once"
    finally:
        await a.stop()
        await b.stop()
