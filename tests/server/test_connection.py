"""The connection layer on its own: a socket's send queue under a ``subscribe`` that replays more than the
queue holds, read by a peer that takes one frame at a time. Real SQLite, hub and timeline; the only
stand-in is a socket of our WebSocket seam (``WebSocketLike``) whose transport takes a frame when told to."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from captivate_chat_api.server.connection import Connection
from captivate_chat_api.server.hub import Hub
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.store import NewEvent
from captivate_chat_api.server.store.sqlite import SQLiteStore
from captivate_chat_api.server.timeline import Timeline

QUEUE = 10


class SlowPeer:
    """A socket whose peer takes one frame each time :meth:`take` is called (a reader slower than the replay)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None
        self._credit = asyncio.Semaphore(0)

    async def send_text(self, data: str) -> None:
        await self._credit.acquire()
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def take(self, frames: int = 1) -> None:
        for _ in range(frames):
            self._credit.release()


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_a_replay_longer_than_the_queue_leaves_room_for_its_reply(tmp_path: Path) -> None:
    """It once filled the queue to the brim, so the ``subscribe`` reply that follows a replay (or a live event)
    closed a socket that was reading all along with 1013, about one time in fifteen under load."""
    store = SQLiteStore(str(tmp_path / "c.db"))
    await store.open()
    try:
        hub = Hub(max_outbound_frame_bytes=128 * 1024, message_link_base=lambda: "http://test")
        timeline = Timeline(store, hub)
        key = generate_key()
        channel = await store.create_channel_with_key("c", hash_key(key), key[:8])
        await store.create_conversation(channel.id, "c1", "u1", {}, {}, {})
        text = [
            NewEvent("user_message", {"content": {"type": "text", "text": f"m{n}"}}) for n in range(4 * QUEUE)
        ]
        await timeline.append(channel.id, "c1", text)

        peer = SlowPeer()
        connection = Connection(peer, channel, queue_frames=QUEUE)
        hub.add(connection)
        subscribe = asyncio.create_task(timeline.subscribe(connection, "c1", 0))
        while not subscribe.done():  # slower than the replay: the queue is as full as the replay makes it
            await asyncio.sleep(0.02)
            peer.take()
        assert await subscribe == 4 * QUEUE
        connection.send(json.dumps({"event": {"event_type": "subscribe_success", "event_payload": {}}}))
        timeline_live = await timeline.append(channel.id, "c1", text[:2])  # live events right after it
        assert [e.seq for e in timeline_live] == [4 * QUEUE + 1, 4 * QUEUE + 2]
        assert connection.accepting, "the reply and the live events that follow a replay fit the queue"
        peer.take(4 * QUEUE)
        await settle()
        seqs = [f["event"]["event_payload"].get("seq") for f in peer.sent]
        assert seqs == [*range(1, 4 * QUEUE + 1), None, 4 * QUEUE + 1, 4 * QUEUE + 2]
        assert peer.closed is None
    finally:
        await store.close()


async def test_a_replay_to_a_socket_that_takes_nothing_is_closed_1013_after_its_patience(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(str(tmp_path / "c.db"))
    await store.open()
    try:
        key = generate_key()
        channel = await store.create_channel_with_key("c", hash_key(key), key[:8])
        peer = SlowPeer()
        connection = Connection(peer, channel, queue_frames=QUEUE)
        connection.begin_replay("c1", 0)
        mark = QUEUE // 2
        for seq in range(1, mark + 2):  # the first is in flight, the others queue up to the replay's mark
            await connection.replay("c1", seq, json.dumps({"seq": seq}), patience=0.1)
        assert connection.accepting
        began = asyncio.get_running_loop().time()
        await connection.replay("c1", mark + 2, json.dumps({"seq": mark + 2}), patience=0.1)
        assert asyncio.get_running_loop().time() - began >= 0.1, "it waited for the peer first"
        await settle()
        assert peer.closed is not None and peer.closed[0] == 1013
        assert not connection.accepting and connection.closed.is_set()
    finally:
        await store.close()
