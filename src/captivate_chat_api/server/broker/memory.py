"""An in-process broker: the gateway processes are the nodes attached to one :class:`MemoryBus`.

A lone gateway has a bus of its own with one node (nothing to share: the relay skips it); gateways built
in one process on one bus (tests, embedding) behave as separate processes on a Redis broker, without Redis.
"""

from __future__ import annotations

import asyncio
import time

from .base import Broker, BrokerMessage, MessageHandler, ResyncHandler


class MemoryBus:
    def __init__(self) -> None:
        self.nodes: dict[str, tuple[asyncio.AbstractEventLoop, MessageHandler]] = {}


class MemoryBroker(Broker):
    def __init__(self, bus: MemoryBus | None = None) -> None:
        super().__init__()
        self.bus = bus or MemoryBus()
        self.lag = 0.0

    @property
    def shared(self) -> bool:
        return len(self.bus.nodes) > 1

    async def start(self, on_message: MessageHandler, on_resync: ResyncHandler) -> None:
        self.bus.nodes[self.node] = (asyncio.get_running_loop(), on_message)

    def publish(self, message: BrokerMessage) -> None:
        message["node"] = self.node
        message["ts"] = time.time()
        for node, (loop, handler) in list(self.bus.nodes.items()):
            if node != self.node and not loop.is_closed():
                loop.call_soon_threadsafe(handler, dict(message))

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self.bus.nodes.pop(self.node, None)
