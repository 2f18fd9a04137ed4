"""The built-in DEMO agent: proves the plumbing, answers predictably, and is not an AI.

- empty text (bot-first start): a greeting;
- any text: ``You said: <text>``;
- ``buttons``: a button message; ``cards``: a card collection; ``table``: an HTML table;
- ``action``: also an ``action`` event (``demo_action``);
- ``title <words>``: renames the conversation (``conversation_update`` ``title_changed``);
- ``big``: a reply too large for one WebSocket frame (exercises the 413 ``message_link`` fallback);
- ``human``: hands the conversation to a human (``escalateToHuman``);
- ``switch <agent>``: hands it to another AI agent (``escalate_to_agent``);
- a client action: ``Action received: <id>``;
- a message with files: also ``Files received: <names>`` (each name with its extracted text's length).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...protocol import AgentMetadata, AgentResponse, ChatRequest, OutgoingAction, text_content
from ...protocol.files import file_text
from .base import built

GREETING = "Hello! I am the Captivate Chat demo agent. Type 'help' to see what I can do."
HELP = "Try: buttons, cards, table, action, title <new title>, big, human, switch <agent>. Anything else is echoed."


CARD_IMAGE = "/static/demo-card.svg"  # shipped with the package: the pages make no external request


TABLE = "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>"


@dataclass(slots=True)
class Turn:
    """What one turn answers, filled in by the commands."""

    metadata: AgentMetadata
    """Handed back unchanged unless a command changes it (copied only then: no metadata patch)."""
    messages: list[Any] = field(default_factory=list)
    actions: list[OutgoingAction] = field(default_factory=list)

    def say(self, text: str) -> None:
        self.messages.append(text_content(text))


class DemoAgent:
    name = "demo"
    immediate = True
    """It never awaits: its turn needs no task of its own."""

    def __init__(self, base_url: Callable[[], str] | None = None) -> None:
        """``base_url`` gives the gateway's public URL, for the card's image and link (without it the card
        has neither)."""
        self._base_url = base_url
        self._commands: dict[str, Callable[[Turn, str], None]] = {
            "help": lambda turn, _: turn.say(HELP),
            "buttons": self._buttons,
            "cards": self._cards,
            "table": lambda turn, _: turn.messages.append({"type": "table", "table": TABLE}),
            "action": self._action,
            "human": self._human,
            "big": lambda turn, _: turn.say("x" * (300 * 1024)),
        }
        self._prefixed: dict[str, Callable[[Turn, str], None]] = {
            "title ": self._title,
            "switch ": self._switch,
        }

    async def __call__(self, request: ChatRequest) -> AgentResponse:
        turn = Turn(request.metadata)
        if request.incoming_action:
            for action in request.incoming_action:
                turn.say(f"Action received: {action.id}")
        elif request.user_input:
            self._answer(turn, request.user_input.strip())
        elif not request.files:  # empty text, no files: the bot-first start
            turn.say(GREETING)
        if request.files:
            names = ", ".join(
                f"{f.get('filename') or 'file'} ({len(file_text(f))} chars)" for f in request.files
            )
            turn.say(f"Files received: {names}")
        # constructed, not validated: every part is ours and of its type already (validation only copied)
        return built(
            AgentResponse,
            {
                "response": turn.messages,
                "session_id": request.session_id,
                "metadata": turn.metadata,
                "outgoing_action": turn.actions or None,
                "hasLivechat": request.hasLivechat,
            },
        )

    def _answer(self, turn: Turn, text: str) -> None:
        """The echo, then what the text's keyword (or keyword prefix) adds."""
        turn.say(f"You said: {text}")
        keyword = text.lower()
        command = self._commands.get(keyword)
        if command is None:
            command = next((c for p, c in self._prefixed.items() if keyword.startswith(p)), None)
        if command is not None:
            command(turn, text)

    @staticmethod
    def _buttons(turn: Turn, _: str) -> None:
        turn.messages.append(
            {"type": "button", "buttons": {"title": "Pick one", "options": ["Yes", "No", "Maybe"]}}
        )

    def _cards(self, turn: Turn, _: str) -> None:
        card: dict[str, Any] = {"text": "Captivate Chat", "description": "Self-hosted gateway"}
        if self._base_url is not None:
            base = self._base_url().rstrip("/")
            card.update(image_url=base + CARD_IMAGE, link=base + "/")
        turn.messages.append({"type": "cards", "cards": [card]})

    @staticmethod
    def _action(turn: Turn, text: str) -> None:
        turn.actions.append(OutgoingAction(id="demo_action", payload={"source": "demo", "text": text}))

    @staticmethod
    def _title(turn: Turn, text: str) -> None:
        title = text[len("title ") :].strip()
        turn.metadata = turn.metadata.model_copy(deep=True)
        turn.metadata.channel.custom["conversation_title"] = title
        turn.metadata.channel.custom["title"] = {"type": "title", "title": title}

    @staticmethod
    def _human(turn: Turn, _: str) -> None:
        turn.say("Let me find a human for you.")
        turn.actions.append(OutgoingAction(id="escalateToHuman"))

    @staticmethod
    def _switch(turn: Turn, text: str) -> None:
        agent_id = text[len("switch ") :].strip()
        turn.actions.append(
            OutgoingAction(id="escalate_to_agent", payload={"agent_id": agent_id, "reason": "asked"})
        )
