"""Redis pub/sub broker: one channel per deployment, one sender task, reconnects.

Every name is prefixed by the deployment's namespace (two deployments on one Redis never hear each
other). The outbox is drained by one task that pipelines everything queued into one round trip (order is
kept: one connection, one sender), so the broker keeps up with what the processes produce.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ..fastjson import dumps, loads
from .base import Broker, BrokerMessage, MessageHandler, ResyncHandler

log = logging.getLogger("captivate_chat_api.server.broker")

OUTBOX_LIMIT = 100_000
PIPELINE_MAX = 1000


class RedisBroker(Broker):
    def __init__(self, url: str, namespace: str = "captivate-chat") -> None:
        super().__init__()
        self.url = url
        self.namespace = namespace
        self.hub_channel = f"{namespace}:hub"
        self.lag = 0.0
        self._redis = aioredis.from_url(url, socket_connect_timeout=2, health_check_interval=5)
        self._outbox: asyncio.Queue[BrokerMessage] = asyncio.Queue(OUTBOX_LIMIT)
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    async def start(self, on_message: MessageHandler, on_resync: ResyncHandler) -> None:
        subscribed = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._listen(on_message, on_resync, subscribed), name="broker-listen"),
            asyncio.create_task(self._send(), name="broker-send"),
        ]
        try:  # a first subscription before serving, if Redis is there; the listener keeps trying otherwise
            await asyncio.wait_for(subscribed.wait(), 5)
        except TimeoutError:
            log.warning(
                "the broker is not reachable yet; delivering to this process's sockets only until it is"
            )

    def publish(self, message: BrokerMessage) -> None:
        message["node"] = self.node
        message["ts"] = time.time()
        try:
            self._outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped += 1  # the others will catch up from the store after their resync

    async def ping(self) -> None:
        await self._redis.ping()

    async def _send(self) -> None:
        while True:
            batch = [await self._outbox.get()]
            while len(batch) < PIPELINE_MAX and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            while True:
                try:
                    async with self._redis.pipeline(transaction=False) as pipe:
                        for message in batch:
                            pipe.publish(self.hub_channel, dumps(message))
                        await pipe.execute()
                    break
                except RedisError as exc:
                    log.warning("broker publish failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(0.5)
                    if self._outbox.qsize() > OUTBOX_LIMIT // 2:
                        self.dropped += len(
                            batch
                        )  # under a long outage keep the newest; the store has them all
                        break

    async def _listen(
        self, on_message: MessageHandler, on_resync: ResyncHandler, subscribed: asyncio.Event
    ) -> None:
        lost = False
        delay = 0.2
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self.hub_channel)
                subscribed.set()
                delay = 0.2
                if lost:
                    log.info("broker link restored; catching up from the store")
                    await on_resync()
                    lost = False
                async for item in pubsub.listen():
                    if item.get("type") != "message":
                        continue
                    message = loads(item["data"])
                    if message.get("node") == self.node:
                        continue
                    self.lag = max(0.0, time.time() - float(message.get("ts", time.time())))
                    try:
                        on_message(message)
                    except Exception:
                        log.exception("a broker message could not be handled")
            except (RedisError, OSError) as exc:
                if not lost:
                    log.warning("broker link lost (%s); retrying", type(exc).__name__)
                lost = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()
