"""Redis pub/sub broker: a channel per deployment for what every process must hear, a channel per
conversation for its events (heard only by the processes watching it), one sender task, reconnects.

Every name is prefixed by the deployment's namespace (two deployments on one Redis never hear each
other): ``<namespace>:hub`` and ``<namespace>:c:<conversation id>``. The outbox is drained by one task
that writes everything queued in one write on a connection of its own, consecutive messages for one
channel in one ``PUBLISH`` (order is kept: one connection, one sender), and does not wait for the replies
before the next write (another task reads them): a message waits one loop turn, not a round trip behind
the previous batch. What a process watches is reconciled with its
subscriptions by one more task, in one ``SUBSCRIBE``/``UNSUBSCRIBE`` for all that changed meanwhile; once
Redis confirms a subscription, ``on_watching`` lets the relay fill from the store what was published before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ..fastjson import dumps, loads
from .base import Broker, BrokerMessage, MessageHandler, ResyncHandler, WatchHandler

log = logging.getLogger("captivate_chat_api.server.broker")

OUTBOX_LIMIT = 100_000


class RedisBroker(Broker):
    def __init__(self, url: str, namespace: str = "captivate-chat") -> None:
        super().__init__()
        self.url = url
        self.namespace = namespace
        self.hub_channel = f"{namespace}:hub"
        self.conversation_prefix = f"{namespace}:c:"
        self.lag = 0.0
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, health_check_interval=5)
        self._pending: list[tuple[str, BrokerMessage]] = []
        self._ready = asyncio.Event()
        self._link: _PublishLink | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.watching: set[str] = set()
        """Conversations whose channel this process wants to hear."""
        self._subscribed: set[str] = set()
        """Conversations whose channel was subscribed on the current link."""
        self._pubsub: Any = None
        self._changed = asyncio.Event()
        self._on_watching: WatchHandler | None = None

    def channel_of(self, conversation_id: str) -> str:
        return self.conversation_prefix + conversation_id

    async def start(
        self, on_message: MessageHandler, on_resync: ResyncHandler, on_watching: WatchHandler | None = None
    ) -> None:
        self._on_watching = on_watching
        subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(on_message, on_resync, subscribed), name="broker-listen"),
            asyncio.create_task(self._send(), name="broker-send"),
            asyncio.create_task(self._reconcile(), name="broker-subscriptions"),
        ]
        try:  # a first subscription before serving, if Redis is there; the listener keeps trying otherwise
            await asyncio.wait_for(subscribed.wait(), 5)
        except TimeoutError:
            log.warning(
                "the broker is not reachable yet; delivering to this process's sockets only until it is"
            )

    def publish(self, message: BrokerMessage, conversation_id: str | None = None) -> None:
        message["node"] = self.node
        message["ts"] = time.time()
        channel = self.hub_channel if conversation_id is None else self.channel_of(conversation_id)
        if len(self._pending) >= OUTBOX_LIMIT:
            self.dropped += 1  # the others will catch up from the store after their resync
            return
        self._pending.append((channel, message))
        self._ready.set()

    def watch(self, conversation_id: str) -> None:
        if conversation_id not in self.watching:
            self.watching.add(conversation_id)
            self._changed.set()

    def unwatch(self, conversation_id: str) -> None:
        if conversation_id in self.watching:
            self.watching.discard(conversation_id)
            self._changed.set()

    async def ping(self) -> None:
        await self._redis.ping()

    # sending

    async def _send(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            batch, self._pending = self._pending, []
            commands = [
                ("PUBLISH", channel, dumps(messages)) for channel, messages in consecutive_runs(batch)
            ]
            while True:
                try:
                    if self._link is None or self._link.broken:
                        await self._close_link()
                        self._link = await _PublishLink.open(self._redis)
                    await self._link.write(commands)
                    break
                except (RedisError, OSError) as exc:
                    log.warning("broker publish failed (%s); retrying", type(exc).__name__)
                    await self._close_link()
                    await asyncio.sleep(0.5)
                    if len(self._pending) > OUTBOX_LIMIT // 2:
                        # under a long outage keep the newest; the store has them all
                        self.dropped += len(batch)
                        break

    async def _close_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    # subscriptions

    async def _reconcile(self) -> None:
        """Make the current link's subscriptions what :attr:`watching` says, in one command each way."""
        while True:
            await self._changed.wait()
            self._changed.clear()
            pubsub = self._pubsub
            if pubsub is None:
                continue  # the listener subscribes everything watched when the link is back
            gone = self._subscribed - self.watching
            new = self.watching - self._subscribed
            try:
                if gone:
                    self._subscribed -= gone
                    await pubsub.unsubscribe(*(self.channel_of(c) for c in gone))
                if new:
                    self._subscribed |= new
                    await pubsub.subscribe(*(self.channel_of(c) for c in new))
            except (RedisError, OSError):
                pass  # the listener sees the link fail and subscribes everything again

    # listening

    async def _listen(
        self, on_message: MessageHandler, on_resync: ResyncHandler, subscribed: asyncio.Event
    ) -> None:
        lost = False
        delay = 0.2
        prefix = self.conversation_prefix.encode()
        hub = self.hub_channel.encode()
        while True:
            pubsub = self._redis.pubsub()
            try:
                initial = set(self.watching)
                await pubsub.subscribe(self.hub_channel, *(self.channel_of(c) for c in initial))
                self._subscribed = set(initial)
                self._pubsub = pubsub
                self._changed.set()  # what changed while the link was being made
                async for item in pubsub.listen():
                    kind = item.get("type")
                    if kind == b"message" or kind == "message":
                        self._dispatch(item["data"], on_message)
                    elif kind == b"subscribe" or kind == "subscribe":
                        channel = item["channel"]
                        if channel == hub:
                            # one command subscribed the hub and everything watched: all of it is heard now
                            subscribed.set()
                            delay = 0.2
                            if lost:
                                log.info("broker link restored; catching up from the store")
                                await on_resync()
                                lost = False
                        elif channel.startswith(prefix):
                            conversation_id = channel[len(prefix) :].decode()
                            if conversation_id in initial:
                                initial.discard(conversation_id)  # a resync covers these
                            elif conversation_id in self.watching and self._on_watching is not None:
                                self._on_watching(conversation_id)
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning("broker link lost (%s); retrying", type(exc).__name__)
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    def _dispatch(self, data: bytes, on_message: MessageHandler) -> None:
        decoded = loads(data)
        for message in decoded if isinstance(decoded, list) else (decoded,):
            if message.get("node") == self.node:
                continue
            self.lag = max(0.0, time.time() - float(message.get("ts", time.time())))
            try:
                on_message(message)
            except Exception:
                log.exception("a broker message could not be handled")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._close_link()
        await self._redis.aclose()


def consecutive_runs(batch: list[tuple[str, BrokerMessage]]) -> list[tuple[str, list[BrokerMessage]]]:
    """Consecutive messages for one channel, together (one ``PUBLISH`` each run; the order stays)."""
    runs: list[tuple[str, list[BrokerMessage]]] = []
    for channel, message in batch:
        if runs and runs[-1][0] == channel:
            runs[-1][1].append(message)
        else:
            runs.append((channel, [message]))
    return runs


class _PublishLink:
    """The sender's connection: commands are written without waiting for their replies, which a task of
    its own reads (and counts: one per ``PUBLISH``); a failed read marks the link broken."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.broken = False
        self.errors = 0
        self._reader = asyncio.create_task(self._read(), name="broker-publish-replies")

    @classmethod
    async def open(cls, client: aioredis.Redis) -> _PublishLink:
        connection = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
        await connection.connect()
        return cls(connection)

    async def write(self, commands: list[tuple[str, str, str]]) -> None:
        await self.connection.send_packed_command(self.connection.pack_commands(commands), check_health=False)

    async def _read(self) -> None:
        try:
            while True:  # redis-py's parser (hiredis's, when installed), one reply at a time
                try:
                    await self.connection.read_response()
                except ResponseError:
                    self.errors += 1  # Redis refused one PUBLISH; the others went
        except (RedisError, OSError):
            self.broken = True

    async def close(self) -> None:
        self.broken = True
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader
        with contextlib.suppress(Exception):
            await self.connection.disconnect()
