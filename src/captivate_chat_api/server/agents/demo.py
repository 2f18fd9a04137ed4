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
from typing import Any

from ...protocol import AgentResponse, ChatRequest, OutgoingAction, text_content
from ...protocol.files import file_text

GREETING = "Hello! I am the Captivate Chat demo agent. Type 'help' to see what I can do."
HELP = "Try: buttons, cards, table, action, title <new title>, big, human, switch <agent>. Anything else is echoed."


CARD_IMAGE = "/static/demo-card.svg"  # shipped with the package: the pages make no external request


class DemoAgent:
    name = "demo"
    immediate = True
    """It never awaits: its turn needs no task of its own."""

    def __init__(self, base_url: Callable[[], str] | None = None) -> None:
        """``base_url`` gives the gateway's public URL, for the card's image and link (without it the card
        has neither)."""
        self._base_url = base_url

    async def __call__(self, request: ChatRequest) -> AgentResponse:
        messages: list[Any] = []
        actions: list[OutgoingAction] = []
        metadata = request.metadata  # handed back unchanged: no metadata patch (copied only to change it)
        if request.incoming_action:
            for action in request.incoming_action:
                messages.append(text_content(f"Action received: {action.id}"))
        elif (request.user_input is None or request.user_input == "") and not request.files:
            messages.append(text_content(GREETING))
        elif not request.user_input:
            pass  # a files-only message: answered below
        else:
            text = request.user_input.strip()
            keyword = text.lower()
            messages.append(text_content(f"You said: {text}"))
            if keyword == "help":
                messages.append(text_content(HELP))
            elif keyword == "buttons":
                messages.append(
                    {"type": "button", "buttons": {"title": "Pick one", "options": ["Yes", "No", "Maybe"]}}
                )
            elif keyword == "cards":
                card: dict[str, Any] = {"text": "Captivate Chat", "description": "Self-hosted gateway"}
                if self._base_url is not None:
                    base = self._base_url().rstrip("/")
                    card.update(image_url=base + CARD_IMAGE, link=base + "/")
                messages.append({"type": "cards", "cards": [card]})
            elif keyword == "table":
                messages.append(
                    {
                        "type": "table",
                        "table": "<table><tr><th>a</th><th>b</th></tr><tr><td>1</td><td>2</td></tr></table>",
                    }
                )
            elif keyword == "action":
                actions.append(OutgoingAction(id="demo_action", payload={"source": "demo", "text": text}))
            elif keyword.startswith("title "):
                title = text[len("title ") :].strip()
                metadata = metadata.model_copy(deep=True)
                metadata.channel.custom["conversation_title"] = title
                metadata.channel.custom["title"] = {"type": "title", "title": title}
            elif keyword == "human":
                messages.append(text_content("Let me find a human for you."))
                actions.append(OutgoingAction(id="escalateToHuman"))
            elif keyword.startswith("switch "):
                actions.append(
                    OutgoingAction(
                        id="escalate_to_agent", payload={"agent_id": text[7:].strip(), "reason": "asked"}
                    )
                )
            elif keyword == "big":
                messages.append(text_content("x" * (300 * 1024)))
        if request.files:
            names = ", ".join(
                f"{f.get('filename') or 'file'} ({len(file_text(f))} chars)" for f in request.files
            )
            messages.append(text_content(f"Files received: {names}"))
        return AgentResponse(
            response=messages,
            session_id=request.session_id,
            metadata=metadata,
            outgoing_action=actions or None,
            hasLivechat=request.hasLivechat,
        )
