"""Start a coroutine now, on the caller's stack; a task only if (and from where) it has to wait.

An in-process agent's turn (the demo agent, a ``python:`` agent that answers without I/O) runs to its
first real wait without being scheduled: no task is created for a turn that never suspends, and one that
suspends (on its store write, a webhook's HTTP call) continues in a task from that point on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any


class Continuation:
    """An awaitable that waits for what the started coroutine was waiting for, then drives it on."""

    __slots__ = ("_coro", "_pending")

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self._coro, self._pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # noqa: BLE001 -- a cancellation (or throw) goes to the coroutine
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def _drive(awaitable: Continuation) -> Any:
    return await awaitable


def start_eagerly(coro: Coroutine[Any, Any, Any], tasks: set[asyncio.Task[Any]]) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it finishes or first suspends; in the latter case hand it to a task (kept in
    ``tasks`` until done). Returns that task, or None when the coroutine finished at once. An exception
    the coroutine raises at once is raised here."""
    try:
        pending = coro.send(None)
    except StopIteration:
        return None
    task = asyncio.get_running_loop().create_task(_drive(Continuation(coro, pending)))
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return task


async def await_within(coro: Coroutine[Any, Any, Any], timeout: float) -> Any:
    """``await asyncio.wait_for(coro, timeout)``, except that a coroutine that finishes without waiting
    costs neither a task nor a timer (it cannot overrun the timeout)."""
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return stop.value
    return await asyncio.wait_for(_drive(Continuation(coro, pending)), timeout)
