"""AI agents behind one interface; :func:`agent_from_spec` turns a channel's agent spec into one."""

from __future__ import annotations

from .base import Agent, AgentError
from .demo import DemoAgent

KNOWN_SPECS = ("demo",)


def agent_from_spec(spec: str) -> Agent:
    if spec == "demo":
        return DemoAgent()
    raise ValueError(f"unknown agent spec {spec!r} (known: {', '.join(KNOWN_SPECS)})")


__all__ = ["KNOWN_SPECS", "Agent", "AgentError", "DemoAgent", "agent_from_spec"]
