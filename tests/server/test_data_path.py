"""Fast tests of the hot path's modules, each on its own: the SQLite group-commit writer, the hub and its
sockets, the timeline (fan-out in commit order, subscribe racing writers), the relay over the in-process
broker, the handlers' replies and the eager agent turn. Real SQLite files in a temp dir; the only stand-in
is a socket of our own WebSocket seam (``WebSocketLike``) that records what it was sent."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from captivate_chat_api.protocol import parse_envelope
from captivate_chat_api.server.agents.demo import DemoAgent
from captivate_chat_api.server.agents.runner import AgentRunner
from captivate_chat_api.server.auth import Authenticator
from captivate_chat_api.server.broker.memory import MemoryBroker, MemoryBus
from captivate_chat_api.server.broker.relay import EventMessage, Relay, RemoteSocket, from_wire, to_wire
from captivate_chat_api.server.connection import Connection
from captivate_chat_api.server.eager import await_within, start_eagerly
from captivate_chat_api.server.handlers import Handlers, Request
from captivate_chat_api.server.hub import Hub
from captivate_chat_api.server.keys import generate_key, hash_key
from captivate_chat_api.server.livechat import LiveChat
from captivate_chat_api.server.store import Channel, NewEvent
from captivate_chat_api.server.store.sqlite import SQLiteStore
from captivate_chat_api.server.store.sqlite_writer import WriterThread
from captivate_chat_api.server.timeline import Timeline


class FakeSocket:
    """Our WebSocket seam, recording the frames written to it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str | None] | None = None

    async def send_text(self, data: str) -> None:
        self.sent.append(json.loads(data))

    async def close(self, code: int = 1000, reason: str | None = None) -> None:
        self.closed = (code, reason)

    def seqs(self, conversation_id: str) -> list[int]:
        return [
            f["event"]["event_payload"]["seq"]
            for f in self.sent
            if f["event"]["event_payload"].get("conversation_id") == conversation_id
            and isinstance(f["event"]["event_payload"].get("seq"), int)
        ]


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


class World:
    """A store, a hub, a timeline and a relay (on ``bus``), wired as the gateway wires them."""

    def __init__(self, path: Path, bus: MemoryBus | None = None) -> None:
        self.store = SQLiteStore(str(path))
        self.hub = Hub(max_outbound_frame_bytes=128 * 1024, message_link_base=lambda: "http://test")
        self.timeline = Timeline(self.store, self.hub)
        self.relay = Relay(self.hub, self.store, MemoryBroker(bus))

    async def __aenter__(self) -> World:  # noqa: PYI034 -- a test fixture, never subclassed
        await self.store.open()
        await self.relay.start(self.timeline.subscribe)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.relay.close()
        await self.store.close()

    async def channel(self) -> Channel:
        key = generate_key()
        return await self.store.create_channel_with_key("c", hash_key(key), key[:8])

    async def conversation(self, channel: Channel, cid: str = "c1") -> str:
        await self.store.create_conversation(channel.id, cid, "u1", {}, {}, {})
        return cid

    def socket(self, channel: Channel) -> tuple[Connection, FakeSocket]:
        fake = FakeSocket()
        connection = Connection(fake, channel, queue_frames=10_000)
        self.hub.add(connection)
        connection.start()
        return connection, fake


def text(n: int | str) -> NewEvent:
    return NewEvent("user_message", {"content": {"type": "text", "text": str(n)}}, "user", f"m{n}")


# the writer ---------------------------------------------------------------------------------------------


async def test_group_commit_batches_writes_and_resolves_them_in_commit_order(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = WriterThread(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
    await writer.start()
    await writer.call(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))
    order: list[int] = []

    def insert(conn: sqlite3.Connection, n: int) -> int:
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        return n

    futures = [writer.write(insert, n) for n in range(200)]
    for future in futures:
        future.add_done_callback(lambda f: order.append(f.result()))
    await asyncio.gather(*futures)
    assert order == list(range(200)), "resolved in the order committed"
    assert writer.batches < 200, "writes queued during a commit share the next transaction"
    # acknowledged means committed: another connection sees every row
    assert sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone()[0] == 200
    await writer.stop()


async def test_a_failing_write_rolls_back_alone(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    writer = WriterThread(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
    await writer.start()
    await writer.call(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))

    def insert(conn: sqlite3.Connection, n: int, fail: bool) -> None:
        conn.execute("INSERT INTO t VALUES (?)", (n,))
        if fail:
            raise LookupError(n)

    results = await asyncio.gather(
        *(writer.write(insert, n, n % 3 == 0) for n in range(30)), return_exceptions=True
    )
    assert [isinstance(r, LookupError) for r in results] == [n % 3 == 0 for n in range(30)]
    rows = [r[0] for r in sqlite3.connect(path).execute("SELECT n FROM t ORDER BY n")]
    assert rows == [n for n in range(30) if n % 3]
    await writer.stop()


# hub + timeline -----------------------------------------------------------------------------------------


async def test_concurrent_appends_fan_out_in_seq_order_without_a_lock(tmp_path: Path) -> None:
    async with World(tmp_path / "s.db") as world:
        channel = await world.channel()
        a, b = await world.conversation(channel, "a"), await world.conversation(channel, "b")
        connection, fake = world.socket(channel)
        world.hub.bind(a, connection)
        world.hub.bind(b, connection)
        await asyncio.gather(
            *(world.timeline.append(channel.id, cid, [text(n)]) for n in range(40) for cid in (a, b))
        )
        await settle()
        assert fake.seqs(a) == list(range(1, 41))
        assert fake.seqs(b) == list(range(1, 41))
        assert len(world.timeline.lock) == 0, "appends take no per-conversation lock"


async def test_subscribe_racing_writers_delivers_every_event_once_in_order(tmp_path: Path) -> None:
    async with World(tmp_path / "s.db") as world:
        channel = await world.channel()
        cid = await world.conversation(channel)
        for n in range(1200):  # more than one replay batch
            await world.store.append_events(channel.id, cid, [text(n)])
        connection, fake = world.socket(channel)
        writers = [
            asyncio.ensure_future(world.timeline.append(channel.id, cid, [text(f"live{n}")]))
            for n in range(50)
        ]
        last = await world.timeline.subscribe(connection, cid, 0)
        await asyncio.gather(*writers)
        await settle()
        assert fake.seqs(cid) == list(range(1, 1251))
        assert last >= 1200


async def test_a_gap_in_seq_is_filled_from_the_store(tmp_path: Path) -> None:
    async with World(tmp_path / "s.db") as world:
        channel = await world.channel()
        cid = await world.conversation(channel)
        connection, fake = world.socket(channel)
        world.hub.bind(cid, connection)
        first = await world.timeline.append(channel.id, cid, [text(1)])
        # two events committed, the later one's wake-up first (as PostgreSQL's pool may do)
        later = await world.store.append_events(channel.id, cid, [text(2), text(3)])
        world.hub.publish(later[1])
        world.hub.publish(later[0])
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(fake.seqs(cid)) == 3:
                break
        assert first[0].seq == 1 and fake.seqs(cid) == [1, 2, 3]


async def test_an_oversize_event_becomes_a_message_link(tmp_path: Path) -> None:
    hub = Hub(max_outbound_frame_bytes=100, message_link_base=lambda: "http://gw/")
    from captivate_chat_api.server.store import StoredEvent

    frame = json.loads(
        hub.encode(StoredEvent("c", 3, "bot_message", {"content": "x" * 200}, "t", "bot", "m1"))
    )
    payload = frame["event"]["event_payload"]
    assert frame["event"]["event_type"] == "general_error" and payload["error_code"] == 413
    assert payload["message_link"] == "http://gw/api/custom-channel/messages/c/m1" and payload["seq"] == 3


# relay over the in-process broker -----------------------------------------------------------------------


async def test_two_relays_on_one_bus_share_events_binds_and_direct_frames(tmp_path: Path) -> None:
    bus = MemoryBus()
    async with World(tmp_path / "s.db", bus) as one, World(tmp_path / "s.db", bus) as two:
        channel = await one.channel()
        cid = await one.conversation(channel)
        there, fake = two.socket(channel)
        remote = one.relay.find_client(there.socket_id, channel.id)
        assert isinstance(remote, RemoteSocket)
        remote.bind(cid)
        remote.send('{"event":{"event_type":"direct","event_payload":{}}}')
        await settle()
        await one.timeline.append(channel.id, cid, [text(1)])
        await settle()
        assert fake.sent[0]["event"]["event_type"] == "direct"
        assert fake.seqs(cid) == [1]
        # a socket id of another channel binds nothing
        other = await one.channel()
        one.relay.find_client(there.socket_id, other.id).bind("nope")  # type: ignore[union-attr]
        await settle()
        assert "nope" not in there.conversations


async def test_a_lone_relay_shares_nothing_and_knows_no_remote_sockets(tmp_path: Path) -> None:
    async with World(tmp_path / "s.db") as world:
        assert not world.relay.shared
        assert world.relay.find_client("not-here", "ch") is None


def test_broker_messages_are_typed_and_round_trip() -> None:
    message = EventMessage("c1", 7, "{}")
    wire = to_wire(message)
    assert wire == {"t": "event", "cid": "c1", "seq": 7, "frame": "{}"}
    assert from_wire({**wire, "node": "n", "ts": 1.0}) == message
    assert from_wire({"t": "unknown"}) is None and from_wire({"t": "event", "cid": "c"}) is None


# handlers and agent turns -------------------------------------------------------------------------------


async def test_handlers_return_replies_and_write_to_no_socket(tmp_path: Path) -> None:
    async with World(tmp_path / "s.db") as world:
        channel = await world.channel()
        runner = AgentRunner(world.timeline, LiveChat(world.timeline), agent=DemoAgent())
        handlers = Handlers(world.store, world.hub, world.timeline, runner, Authenticator(world.store))
        connection, fake = world.socket(channel)

        def request(event_type: str, payload: dict[str, Any]) -> Request:
            envelope = parse_envelope({"event": {"event_type": event_type, "event_payload": payload}})
            return Request(channel, "key", envelope, connection, via_websocket=True)

        reply = await handlers.handle(request("conversation_start", {"userId": "u"}))
        await settle()
        assert fake.sent == [], "the handler itself sent nothing"
        cid = reply.body["conversation_id"]
        assert reply.socket_event == ("conversation_start_success", {"conversation_id": cid})
        reply = await handlers.handle(
            request("user_message", {"conversation_id": cid, "content": "hi", "client_msg_id": "x"})
        )
        assert reply.after is not None and reply.ws_event is None
        reply.after()
        for _ in range(50):
            await asyncio.sleep(0.01)
            if len(fake.seqs(cid)) == 2:
                break
        kinds = [f["event"]["event_type"] for f in fake.sent]
        assert kinds == ["user_message", "bot_message"], "fan-out of the stored events only"
        again = await handlers.handle(
            request("user_message", {"conversation_id": cid, "content": "hi", "client_msg_id": "x"})
        )
        assert again.body["duplicate"] is True and again.ws_event == "user_message" and again.after is None


async def test_an_immediate_coroutine_runs_without_a_task() -> None:
    tasks: set[asyncio.Task[Any]] = set()
    ran: list[str] = []

    async def immediate() -> str:
        ran.append("now")
        return "done"

    assert start_eagerly(immediate(), tasks) is None and ran == ["now"] and not tasks
    assert await await_within(immediate(), 0.01) == "done"

    async def waits() -> str:
        await asyncio.sleep(0.01)
        return "later"

    task = start_eagerly(waits(), tasks)
    assert task is not None and tasks == {task}
    assert await task == "later"
    with pytest.raises(TimeoutError):
        await await_within(asyncio.sleep(1), 0.01)


async def test_the_broker_lag_metric_is_set_from_each_message(tmp_path: Path) -> None:
    import time

    async with World(tmp_path / "s.db") as world:
        world.relay.on_broker_message({"t": "unbind", "cid": "c", "node": "other", "ts": time.time() - 5.0})
        lag = world.relay.metrics.broker_lag._value.get()  # prometheus-client's gauge value
        assert 4.9 < lag < 6.0


async def test_a_write_that_loses_the_whole_transaction_fails_its_batch_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    path = tmp_path / "w.db"
    writer = WriterThread(lambda: sqlite3.connect(path, isolation_level=None, check_same_thread=False))
    await writer.start()
    await writer.call(lambda c: c.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)"))

    def insert(conn: sqlite3.Connection, n: int) -> None:
        conn.execute("INSERT INTO t VALUES (?)", (n,))

    def lose_everything(conn: sqlite3.Connection) -> None:
        conn.execute("ROLLBACK")  # as SQLite does by itself on a full disk or an I/O error
        raise sqlite3.OperationalError("database or disk is full")

    import time

    busy = writer.write(lambda conn: time.sleep(0.2))  # the two below queue meanwhile: one batch
    first = writer.write(insert, 1)
    broken = writer.write(lose_everything)
    results = (await asyncio.gather(busy, first, broken, return_exceptions=True))[1:]
    assert all(isinstance(r, sqlite3.OperationalError) for r in results), (
        "nothing of that batch is acknowledged"
    )
    await writer.write(insert, 2)  # the writer is still alive
    assert [r[0] for r in sqlite3.connect(path).execute("SELECT n FROM t")] == [2]
    await writer.stop()


class PausedSocket(FakeSocket):
    """A socket whose transport is paused (a peer that reads slowly) until ``resume()``."""

    def __init__(self) -> None:
        super().__init__()
        self.writable = asyncio.Event()
        self.writable.set()

    async def send_text(self, data: str) -> None:
        await self.writable.wait()
        self.sent.append(json.loads(data))


def frame_of(n: int) -> str:
    return json.dumps({"event": {"event_type": "bot_message", "event_payload": {"n": n}}})


async def test_a_socket_that_takes_frames_at_once_is_written_without_a_task() -> None:
    socket = PausedSocket()
    connection = Connection(socket, Channel("ch", "c", "demo"), queue_frames=3)
    connection.send(frame_of(1))
    assert [f["event"]["event_payload"]["n"] for f in socket.sent] == [1]  # written on the caller's stack
    assert connection._writer is None

    socket.writable.clear()  # the transport pauses: the frame in flight and the ones after it wait, in order
    for n in (2, 3, 4):
        connection.send(frame_of(n))
    assert connection._writer is not None and len(socket.sent) == 1
    socket.writable.set()
    await settle()
    assert [f["event"]["event_payload"]["n"] for f in socket.sent] == [1, 2, 3, 4]
    assert connection._writer is None and connection.accepting  # idle again: the next write is direct

    socket.writable.clear()  # a paused socket whose queue overflows is closed 1013, and says nothing more
    for n in range(5, 10):
        connection.send(frame_of(n))
    await settle()
    assert socket.closed is not None and socket.closed[0] == 1013 and not connection.accepting
    assert connection.closed.is_set()


async def test_a_socket_closed_while_idle_or_after_a_failed_write_is_closed_with_its_code() -> None:
    socket = FakeSocket()
    connection = Connection(socket, Channel("ch", "c", "demo"), queue_frames=10)
    await connection.close(1001, "server shutting down")
    assert socket.closed == (1001, "server shutting down") and connection.closed.is_set()

    class Broken(FakeSocket):
        async def send_text(self, data: str) -> None:
            raise ConnectionResetError("peer gone")

    broken = Broken()
    connection = Connection(broken, Channel("ch", "c", "demo"), queue_frames=10)
    connection.send(frame_of(1))
    await settle()
    assert broken.closed is not None and broken.closed[0] == 1011 and not connection.accepting
