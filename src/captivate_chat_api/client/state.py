"""The client's connection lifecycle as a state table (in the manner of h11's ``_state.py``).

``IDLE`` → ``CONNECTING`` → ``CONNECTED``; a dropped socket goes ``RECONNECTING`` → ``CONNECTED`` (after
which every live conversation is resubscribed from its last ``seq``); ``close()`` or giving up (bad key,
attempts exhausted) ends in ``CLOSED``, from which ``connect()`` may start again.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("captivate_chat_api.client")


class ConnectionState(str, enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


TRANSITIONS: dict[ConnectionState, frozenset[ConnectionState]] = {
    ConnectionState.IDLE: frozenset({ConnectionState.CONNECTING, ConnectionState.CLOSED}),
    ConnectionState.CONNECTING: frozenset({ConnectionState.CONNECTED, ConnectionState.CLOSED}),
    ConnectionState.CONNECTED: frozenset({ConnectionState.RECONNECTING, ConnectionState.CLOSED}),
    ConnectionState.RECONNECTING: frozenset({ConnectionState.CONNECTED, ConnectionState.CLOSED}),
    ConnectionState.CLOSED: frozenset({ConnectionState.CONNECTING}),
}


def check_transition(current: ConnectionState, new: ConnectionState) -> None:
    if new not in TRANSITIONS[current]:
        raise RuntimeError(f"invalid connection state change {current.value} -> {new.value}")


def announce(
    previous: ConnectionState, state: ConnectionState, callbacks: list[Callable[[ConnectionState], Any]]
) -> None:
    """Check the change, then call every ``on_state_change`` callback (a coroutine runs as a task)."""
    check_transition(previous, state)
    log.debug("connection %s -> %s", previous.value, state.value)
    for callback in list(callbacks):
        try:
            result = callback(state)
            if asyncio.iscoroutine(result):
                asyncio.get_running_loop().create_task(result)
        except Exception:
            log.exception("an on_state_change callback raised")
