"""``python:module:attribute``: an agent written in Python, called in-process.

The attribute is an async callable ``(ChatRequest) -> AgentResponse`` (a plain dict in the response
format is accepted too), or a class/factory with no arguments that returns one.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from ...protocol import AgentResponse, ChatRequest
from .base import Agent, AgentError


class PythonAgent:
    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self.name = name

    async def __call__(self, request: ChatRequest) -> AgentResponse:
        result = self._target(request)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, AgentResponse):
            return result
        if isinstance(result, dict):
            return AgentResponse.model_validate(result)
        if hasattr(result, "model_dump"):  # e.g. captivate_ai_api's CaptivateResponseModel
            return AgentResponse.model_validate(result.model_dump())
        raise AgentError(f"agent {self.name} returned {type(result).__name__}, not a response", 502)


def load_python_agent(path: str) -> Agent:
    module_name, _, attribute = path.partition(":")
    try:
        target = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot load agent python:{path}: {exc}") from exc
    if inspect.isclass(target):
        target = target()
    if not callable(target):
        raise ValueError(f"python:{path} is not callable")  # noqa: TRY004 (a bad spec is a ValueError, as the others)
    return PythonAgent(target, path)
