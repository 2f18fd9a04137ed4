"""The broker interface: publish a message to the other processes, hear theirs."""

from __future__ import annotations

import abc
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

BrokerMessage = dict[str, Any]
"""``{"t": kind, "node": sender, ...}``; kinds: event, broadcast, unbind, notify, bind, direct, subscribe."""
MessageHandler = Callable[[BrokerMessage], None]
ResyncHandler = Callable[[], Awaitable[None]]


class Broker(abc.ABC):
    def __init__(self) -> None:
        self.node = uuid.uuid4().hex[:12]
        """This process's id: a process never handles its own messages."""

    @abc.abstractmethod
    async def start(self, on_message: MessageHandler, on_resync: ResyncHandler) -> None:
        """Start listening. ``on_resync`` runs after the link to the others was lost and is back."""

    @abc.abstractmethod
    def publish(self, message: BrokerMessage) -> None:
        """Queue ``message`` for the others, in order; never blocks, never raises."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the broker cannot be reached (readiness)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
