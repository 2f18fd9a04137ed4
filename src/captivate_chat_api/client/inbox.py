"""One conversation's incoming events: callbacks run in order from one task, and ``events()`` queues.

Events that arrive before anybody listens (a bot-first greeting) are kept, up to :data:`BACKLOG_LIMIT`,
and handed to the first consumer that attaches.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from ..protocol import (
    Action,
    BotMessage,
    ConversationUpdate,
    GeneralError,
    LivechatMessage,
    PlatformEvent,
    UserMessageEcho,
    is_empty_text,
)
from .models import ConversationUpdateInfo, ErrorInfo

log = logging.getLogger("captivate_chat_api.client")

BACKLOG_LIMIT = 1000
END = object()
"""Put on a queue when the conversation ends (deleted, or the client closed)."""

Call = Callable[[], Any]


class ErrorNotice:
    """An error for the ``on_error`` callbacks only, not an event of the stream (the 413 fallback: the
    message itself was fetched and delivered)."""

    __slots__ = ("error",)

    def __init__(self, error: GeneralError) -> None:
        self.error = error


def _message(kind: str) -> Callable[[dict[str, list[Callable[..., Any]]], Any], list[Call]]:
    def calls(handlers: dict[str, list[Callable[..., Any]]], event: Any) -> list[Call]:
        return [partial(cb, event.content, kind) for cb in handlers.get("message", [])]

    return calls


def _on_error(handlers: dict[str, list[Callable[..., Any]]], event: GeneralError) -> list[Call]:
    info = ErrorInfo(event.conversation_id, event.error_code, event.error_desc)
    return [partial(cb, info) for cb in handlers.get("error", [])]


def _error(handlers: dict[str, list[Callable[..., Any]]], event: GeneralError) -> list[Call]:
    text = f"[Error: {event.error_desc or 'Unknown error'}]"
    return _on_error(handlers, event) + [partial(cb, text, "error") for cb in handlers.get("message", [])]


def _action(handlers: dict[str, list[Callable[..., Any]]], event: Action) -> list[Call]:
    return [partial(cb, event.actions) for cb in handlers.get("action", [])]


def _update(handlers: dict[str, list[Callable[..., Any]]], event: ConversationUpdate) -> list[Call]:
    update = ConversationUpdateInfo(event.type, event.conversation_id, event.data)
    return [partial(cb, update) for cb in handlers.get("update", [])]


CALLBACKS: dict[type[PlatformEvent], Callable[[dict[str, list[Callable[..., Any]]], Any], list[Call]]] = {
    BotMessage: _message("ai_agent"),
    LivechatMessage: _message("human_agent"),
    GeneralError: _error,
    Action: _action,
    ConversationUpdate: _update,
}
"""Event type → the typed callbacks it triggers, besides every ``on_event`` callback."""


class Inbox:
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        self.closed = False
        self.handlers: dict[str, list[Callable[..., Any]]] = {}
        self._queues: set[asyncio.Queue[Any]] = set()
        self._backlog: list[PlatformEvent] = []
        self._calls: asyncio.Queue[Any] = asyncio.Queue()
        self._dispatcher: asyncio.Task[None] | None = None

    @property
    def listened(self) -> bool:
        return bool(self.handlers or self._queues)

    def add(self, kind: str, callback: Callable[..., Any]) -> None:
        first_consumer = not self.listened
        self.handlers.setdefault(kind, []).append(callback)
        if first_consumer and self._backlog:
            backlog, self._backlog = self._backlog, []
            for event in backlog:
                self._calls.put_nowait(event)
        self._ensure_dispatcher()

    def queue(self) -> asyncio.Queue[Any]:
        """A new queue of this conversation's events (the backlog first, if nobody listened yet)."""
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if not self.listened:
            for event in self._backlog:
                queue.put_nowait(event)
            self._backlog = []
        if self.closed:
            queue.put_nowait(END)
        self._queues.add(queue)
        return queue

    def discard(self, queue: asyncio.Queue[Any]) -> None:
        self._queues.discard(queue)

    def deliver(self, event: PlatformEvent) -> None:
        """One event, in order (the session already dropped duplicates)."""
        if isinstance(event, UserMessageEcho) and is_empty_text(event.content):
            return  # the bot-first trigger is bookkeeping, not something the user said
        if not self.listened:
            if len(self._backlog) < BACKLOG_LIMIT:
                self._backlog.append(event)
            return
        for queue in self._queues:
            queue.put_nowait(event)
        if self.handlers:
            self._calls.put_nowait(event)
            self._ensure_dispatcher()

    def notify_error(self, event: GeneralError) -> None:
        """Call the ``on_error`` callbacks only."""
        if self.handlers.get("error"):
            self._calls.put_nowait(ErrorNotice(event))
            self._ensure_dispatcher()

    def finish(self) -> None:
        self.closed = True
        for queue in self._queues:
            queue.put_nowait(END)
        self._calls.put_nowait(END)

    def calls_for(self, event: PlatformEvent | ErrorNotice) -> list[Call]:
        """The callbacks this event triggers, each bound to its arguments."""
        if isinstance(event, ErrorNotice):
            return _on_error(self.handlers, event.error)
        calls: list[Call] = [partial(cb, event) for cb in self.handlers.get("event", [])]
        typed = CALLBACKS.get(type(event))
        return calls + typed(self.handlers, event) if typed is not None else calls

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            try:
                self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch_loop())
            except RuntimeError:  # no loop yet (handlers registered before connect): started on first event
                pass

    async def _dispatch_loop(self) -> None:
        while True:
            event = await self._calls.get()
            if event is END:
                return
            for call in self.calls_for(event):
                try:
                    result = call()
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    log.exception("a callback of conversation %s raised", self.conversation_id)
