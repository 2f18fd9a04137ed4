"""``captivate-chat console`` and ``handoff``: live chat for human agents, on the gateway's agent API.

``agent_api`` is the REST + WebSocket client, ``view`` decides what each list, queue change and event looks
like (message content is rendered by the terminal chat's code), ``session`` holds the state and runs the
typed commands, ``main`` is the entry points.
"""

from .agent_api import AgentAPI, AgentFeed, FeedEvent
from .main import ConsoleOptions, console_main, handoff_main, run_console, run_handoff
from .session import ConsoleSession

__all__ = [
    "AgentAPI",
    "AgentFeed",
    "ConsoleOptions",
    "ConsoleSession",
    "FeedEvent",
    "console_main",
    "handoff_main",
    "run_console",
    "run_handoff",
]
