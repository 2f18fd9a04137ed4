"""AI agents behind one interface; :func:`agent_from_spec` turns a channel's agent spec into one."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Agent, AgentError, StreamingAgent
from .demo import DemoAgent

if TYPE_CHECKING:
    from ..store import Channel, Store

KNOWN_SPECS = ("demo", "webhook:URL", "openai:MODEL", "python:MODULE:ATTRIBUTE")


def check_spec(spec: str) -> str:
    """Validate an agent spec's form (not whether the agent is reachable); returns it. Raises ValueError."""
    kind, _, rest = spec.partition(":")
    if spec == "demo":
        return spec
    if kind == "webhook" and rest.startswith(("http://", "https://")):
        return spec
    if kind == "openai" and rest:
        return spec
    if kind == "python" and rest.count(":") == 1 and all(rest.split(":")):
        return spec
    raise ValueError(f"unknown agent spec {spec!r} (one of: {', '.join(KNOWN_SPECS)})")


def check_loadable(spec: str) -> str:
    """Check at start that the agent a spec names can be set up here: a ``python:`` module imports and has
    the attribute, ``openai:`` has its extra. Returns the spec; raises ValueError (a start-up error, not a
    502 at the first message)."""
    kind, _, rest = check_spec(spec).partition(":")
    if kind == "python":
        from .python_agent import load_python_agent

        load_python_agent(rest)
    elif kind == "openai":
        from .openai_agent import INSTALL_HINT, _openai_installed

        if not _openai_installed():
            raise ValueError(INSTALL_HINT)
    return spec


def agent_from_spec(
    spec: str,
    *,
    channel: Channel | None = None,
    store: Store | None = None,
    base_url: Callable[[], str] | None = None,
) -> Agent:
    """The agent a spec names. ``channel`` supplies per-channel secrets (the webhook signing secret),
    ``store`` the conversation history (for ``openai:``), ``base_url`` the gateway's URL (for ``demo``)."""
    kind, _, rest = check_spec(spec).partition(":")
    if kind == "demo":
        return DemoAgent(base_url)
    if kind == "webhook":
        from .webhook import WebhookAgent

        return WebhookAgent(rest, secret=channel.webhook_secret if channel else None)
    if kind == "openai":
        from .openai_agent import OpenAIAgent

        if store is not None and channel is None:
            store = None  # the history is read per channel: without one, none
        return OpenAIAgent.from_spec(rest, store=store, channel_id=channel.id if channel else None)
    from .python_agent import load_python_agent

    return load_python_agent(rest)


__all__ = [
    "KNOWN_SPECS",
    "Agent",
    "AgentError",
    "DemoAgent",
    "StreamingAgent",
    "agent_from_spec",
    "check_loadable",
    "check_spec",
]
