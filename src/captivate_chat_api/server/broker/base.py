"""The broker interface: publish a message to the other processes, hear theirs.

A message goes to every process (``conversation_id=None``: bindings, direct replies, hand-off
notifications) or to the processes *watching* one conversation (its stored events, broadcasts and unbinds:
a process watches a conversation while one of its sockets is bound to it, so it parses only what its own
sockets need).
"""

from __future__ import annotations

import abc
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

BrokerMessage = dict[str, Any]
"""``{"t": kind, "node": sender, "ts": sent, ...}``; kinds: event, broadcast, unbind, notify, bind, direct, subscribe."""
MessageHandler = Callable[[BrokerMessage], None]
ResyncHandler = Callable[[], Awaitable[None]]
WatchHandler = Callable[[str], None]
"""Called with a conversation id once its messages are heard (what was published before may be missed)."""


class Broker(abc.ABC):
    def __init__(self) -> None:
        self.node = uuid.uuid4().hex[:12]
        """This process's id: a process never handles its own messages."""

    @abc.abstractmethod
    async def start(
        self, on_message: MessageHandler, on_resync: ResyncHandler, on_watching: WatchHandler | None = None
    ) -> None:
        """Start listening. ``on_resync`` runs after the link to the others was lost and is back (everything
        watched is heard again); ``on_watching`` after :meth:`watch` took effect."""

    @abc.abstractmethod
    def publish(self, message: BrokerMessage, conversation_id: str | None = None) -> None:
        """Queue ``message`` for the others (all, or those watching ``conversation_id``), in order; never
        blocks, never raises."""

    def watch(self, conversation_id: str) -> None:
        """Hear the messages published for ``conversation_id`` from now on (a broker without topics hears
        everything anyway)."""

    def unwatch(self, conversation_id: str) -> None:
        """Stop hearing them."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the broker cannot be reached (readiness)."""

    @abc.abstractmethod
    async def close(self) -> None: ...
