"""``python:module:attribute``: an agent written in Python, called in-process.

The attribute is an async callable ``(ChatRequest) -> AgentResponse`` (a plain dict in the response
format is accepted too), or a class/factory with no arguments that returns one. The module is looked up
on ``sys.path`` and then in the gateway's working directory (as uvicorn's ``--app-dir .``), so
``captivate-chat serve --agent python:my_agent:answer`` finds ``./my_agent.py``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from ...protocol import AgentResponse, ChatRequest
from .base import Agent, AgentError


class PythonAgent:
    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self.name = name
        self.immediate = bool(getattr(target, "immediate", False)) or not (
            inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(type(target).__call__)
        )
        """A plain function (or one marked ``immediate = True``) answers at once: no task per turn."""

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
    """Import ``MODULE:ATTRIBUTE``; raises ValueError (with the reason and where it looked) if it cannot."""
    module_name, _, attribute = path.partition(":")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)  # after the installed packages: a local file never shadows a library
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name != module_name:  # the module exists but an import inside it failed
            raise ValueError(f"agent python:{path}: importing {module_name} failed: {exc}") from exc
        raise ValueError(
            f"agent python:{path}: no module {module_name} (looked in {cwd} and sys.path)"
        ) from exc
    except Exception as exc:  # the module's own top-level code raised
        raise ValueError(
            f"agent python:{path}: importing {module_name} raised {type(exc).__name__}: {exc}"
        ) from exc
    target = getattr(module, attribute, None)
    if target is None:
        raise ValueError(f"agent python:{path}: {module_name} has no attribute {attribute!r}")
    if inspect.isclass(target):
        target = target()
    if not callable(target):
        raise ValueError(f"agent python:{path}: {module_name}.{attribute} is not callable")  # noqa: TRY004 -- a bad spec
    return PythonAgent(target, path)
