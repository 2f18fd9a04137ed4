"""The agent interface: an async callable from a ChatRequest to an AgentResponse (PROTOCOL.md section 8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

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


_M = TypeVar("_M", bound=BaseModel)
_new = object.__new__  # BaseModel has no __new__ of its own
_set = object.__setattr__  # past BaseModel.__setattr__'s validation, as model_construct does


def built(cls: type[_M], values: dict[str, Any], fields_set: set[str] | None = None) -> _M:
    """``cls.model_construct(**values)`` when ``values`` names every field (``fields_set``: those given,
    default: all), minus the walk over the fields: what pydantic's own ``model_construct`` leaves on an
    instance, set directly (tests/server/agents check the two are alike). For the models of our own
    making on every turn's path (the request, the demo agent's answer): their parts are of their types
    already, and validation would only copy them."""
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_fields_set__", set(values) if fields_set is None else fields_set)
    _set(model, "__pydantic_extra__", {})
    _set(model, "__pydantic_private__", None)
    return model
