"""An in-process broker: the gateway processes are the nodes attached to one :class:`MemoryBus`.

A lone gateway has a bus of its own with one node (nothing to share: the relay skips it); gateways built
in one process on one bus (tests, embedding) behave as separate processes on a Redis broker, without Redis:
a node hears a conversation's messages only while it watches it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from .base import Broker, BrokerMessage, MessageHandler, ResyncHandler, WatchHandler


@dataclass
class _Node:
    loop: asyncio.AbstractEventLoop
    handler: MessageHandler
    watching: set[str] = field(default_factory=set)


class MemoryBus:
    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {}


class MemoryBroker(Broker):
    def __init__(self, bus: MemoryBus | None = None) -> None:
        super().__init__()
        self.bus = bus or MemoryBus()
        self.lag = 0.0
        self._watching: set[str] = set()

    @property
    def shared(self) -> bool:
        return len(self.bus.nodes) > 1

    async def start(
        self, on_message: MessageHandler, on_resync: ResyncHandler, on_watching: WatchHandler | None = None
    ) -> None:
        # a subscription takes effect at once here: nothing published before it can be missed
        self.bus.nodes[self.node] = _Node(asyncio.get_running_loop(), on_message, self._watching)

    def publish(self, message: BrokerMessage, conversation_id: str | None = None) -> None:
        message["node"] = self.node
        message["ts"] = time.time()
        for node, there in list(self.bus.nodes.items()):
            if node == self.node or there.loop.is_closed():
                continue
            if conversation_id is None or conversation_id in there.watching:
                there.loop.call_soon_threadsafe(there.handler, dict(message))

    def watch(self, conversation_id: str) -> None:
        self._watching.add(conversation_id)

    def unwatch(self, conversation_id: str) -> None:
        self._watching.discard(conversation_id)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self.bus.nodes.pop(self.node, None)
