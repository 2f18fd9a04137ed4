"""The agent interface: an async callable from a ChatRequest to an AgentResponse (PROTOCOL.md section 8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ...errors import AgentError as AgentError  # noqa: PLC0414 (re-exported for mypy)
from ...protocol import AgentResponse, ChatRequest


class Agent(Protocol):
    async def __call__(self, request: ChatRequest) -> AgentResponse: ...


def is_immediate(agent: object) -> bool:
    """An agent that answers without waiting for anything (no I/O, no timers, no task-bound context such
    as ``asyncio.timeout``): its turn may start on the caller's stack (``immediate = True`` on the agent)."""
    return bool(getattr(agent, "immediate", False))


@runtime_checkable
class StreamingAgent(Protocol):
    """An agent that can stream: ``emit(delta)`` for each piece of text, then the full response."""

    async def stream(self, request: ChatRequest, emit: Callable[[str], None]) -> AgentResponse: ...
