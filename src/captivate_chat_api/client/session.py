"""The client's protocol core, sans I/O: raw frames in, decisions out (in the manner of websockets' ``protocol.py``).

A :class:`Session` knows which requests wait for a reply, which messages wait for their echo and how far
each conversation has got (``seq``). :meth:`Session.receive` parses one frame and says what to do with it:
settle a waiter, start a conversation, deliver an event, fetch a too-large message, resubscribe after a
gap. It holds no futures, tasks or sockets and needs no event loop; the async client applies the decisions.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProtocolError, error_for_status
from ..protocol import ConversationUpdate, GeneralError, PlatformEvent, parse_frame
from ..protocol.replies import DIRECT_REPLIES

log = logging.getLogger("captivate_chat_api.client")


@dataclass(slots=True)
class Cursor:
    """How far one conversation has got: the highest ``seq`` seen, and whether every next one is expected."""

    last_seq: int = 0
    synced: bool = False


# decisions -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settle:
    """The reply to the request waiting under ``key``: its payload, or the error it carries."""

    key: str
    payload: dict[str, Any] | None = None
    error: ProtocolError | None = None


@dataclass(frozen=True, slots=True)
class Started:
    """A ``conversation_start_success`` no request id claimed: for the oldest waiting start."""

    conversation_id: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand ``event`` to its conversation (in order, once)."""

    conversation_id: str
    event: PlatformEvent


@dataclass(frozen=True, slots=True)
class Closed:
    """The conversation was deleted: end its streams and forget it."""

    conversation_id: str


@dataclass(frozen=True, slots=True)
class FetchLarge:
    """A message too large for a frame (413 with ``message_link``): fetch it, then :meth:`Session.admit` it."""

    event: GeneralError


@dataclass(frozen=True, slots=True)
class Resubscribe:
    """A ``seq`` gap: events were missed; subscribe again from the cursor."""

    conversation_id: str


Decision = Settle | Started | Deliver | Closed | FetchLarge | Resubscribe


def message_key(client_msg_id: str) -> str:
    """The waiter key of a user message: its echo carries the ``client_msg_id``."""
    return f"msg:{client_msg_id}"


@dataclass(slots=True)
class Session:
    """The routing state of one client (all of its conversations)."""

    cursors: dict[str, Cursor] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)
    """Keys of the requests and messages waiting for a reply (request ids, ``msg:<client_msg_id>``)."""

    # bookkeeping ---------------------------------------------------------------------------------

    def track(self, conversation_id: str) -> Cursor:
        """Route this conversation's events from now on (its cursor, created once)."""
        return self.cursors.setdefault(conversation_id, Cursor())

    def forget(self, conversation_id: str) -> None:
        self.cursors.pop(conversation_id, None)

    def expect(self, key: str) -> None:
        """A reply will be waited for under ``key``."""
        self.pending.add(key)

    def withdraw(self, key: str) -> None:
        """Nobody waits under ``key`` any more (answered, timed out or cancelled)."""
        self.pending.discard(key)

    def mark_synced(self, conversation_id: str) -> None:
        """From now on every ``seq`` is expected: a jump means a missed event."""
        self.track(conversation_id).synced = True

    # frames in, decisions out --------------------------------------------------------------------

    def receive(self, raw: str | bytes) -> list[Decision]:
        """Decide what one frame means. Raises :class:`ProtocolError` for a frame that is not one."""
        event = parse_frame(raw)
        return self.route(event, request_id_of(raw))

    def route(self, event: PlatformEvent, request_id: str | None = None) -> list[Decision]:
        if event.event_type == "conversation_start_success":
            return self._started(event.conversation_id, request_id)
        decisions: list[Decision] = []
        if request_id in self.pending and event.event_type != "user_message":
            decisions.append(self._settle(request_id, event))
            if event.event_type in DIRECT_REPLIES:
                return decisions
        client_msg_id = getattr(event, "client_msg_id", None)
        if event.event_type == "user_message" and isinstance(client_msg_id, str):
            key = message_key(client_msg_id)
            if key in self.pending:
                decisions.append(self._settle(key, event))
        if event.conversation_id not in self.cursors:
            if isinstance(event, GeneralError) and event.conversation_id is None:
                log.warning("platform error: %s %s", event.error_code, event.error_desc)
            return decisions
        if isinstance(event, GeneralError) and status_of(event.error_code) == 413 and event.message_link:
            return [*decisions, FetchLarge(event)]
        return decisions + self.admit(event)

    def admit(self, event: PlatformEvent) -> list[Decision]:
        """The ``seq`` rule for an event of a tracked conversation: duplicates dropped, gaps resubscribed."""
        conversation_id = event.conversation_id or ""
        cursor = self.cursors.get(conversation_id)
        if cursor is None:
            return []
        if event.seq is not None:
            if event.seq <= cursor.last_seq:
                return []
            if cursor.synced and event.seq > cursor.last_seq + 1:
                log.info(
                    "gap in %s: have %d, got %d; resubscribing", conversation_id, cursor.last_seq, event.seq
                )
                return [Resubscribe(conversation_id)]
            cursor.last_seq = event.seq
        decisions: list[Decision] = [Deliver(conversation_id, event)]
        if isinstance(event, ConversationUpdate) and event.type == "deleted":
            self.forget(conversation_id)
            decisions.append(Closed(conversation_id))
        return decisions

    def _started(self, conversation_id: str | None, request_id: str | None) -> list[Decision]:
        if not conversation_id or conversation_id in self.cursors:
            return []
        if request_id in self.pending:
            assert request_id is not None
            self.pending.discard(request_id)
            return [Settle(request_id, {"conversation_id": conversation_id})]
        return [Started(conversation_id)]

    def _settle(self, key: str, event: PlatformEvent) -> Settle:
        self.pending.discard(key)
        if isinstance(event, GeneralError):
            retry_after = getattr(event, "retry_after", None)
            error = error_for_status(
                status_of(event.error_code),
                event.error_desc or "error",
                event.conversation_id,
                float(retry_after) if isinstance(retry_after, int | float) else None,
            )
            return Settle(key, error=error)
        return Settle(key, event.model_dump(exclude={"event_type"}))


def request_id_of(raw: str | bytes) -> str | None:
    """The frame's top-level ``request_id`` (the WebSocket transport's correlation id), if any."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if '"request_id"' not in text:
        return None
    value = json.loads(text).get("request_id")
    return value if isinstance(value, str) else None


def status_of(value: int | str | None) -> int:
    """An ``error_code`` as a number (500 when it is none)."""
    try:
        return int(value) if value is not None else 500
    except (TypeError, ValueError):
        return 500
