"""Human hand-off as a state table (in the manner of h11's ``_state.py``).

    ai ──escalate──▶ waiting_human ──take──▶ human ──end──▶ ai
     └────────────────take (a human steps in)───▶ human
                      waiting_human ──end (nobody came)──▶ ai

Every transition is stored atomically with its events (a ``system_message`` for the transcript, and a
``conversation_update`` where the client must learn of it). While the state is not ``ai`` no AI agent is
called, and a late AI reply or push is refused: the bot never talks over a person.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import HandoffConflict as HandoffConflict  # noqa: PLC0414 (re-exported for mypy)


class HandoffState(str, enum.Enum):
    AI = "ai"
    WAITING_HUMAN = "waiting_human"
    HUMAN = "human"


@dataclass(frozen=True, slots=True)
class Transition:
    sources: frozenset[str]
    target: HandoffState
    system_text: str
    update_type: str | None
    """The ``conversation_update`` the client gets, if any (``livechat_started`` / ``livechat_ended``)."""


AI, WAITING, HUMAN = HandoffState.AI.value, HandoffState.WAITING_HUMAN.value, HandoffState.HUMAN.value

TRANSITIONS: dict[str, Transition] = {
    "escalate": Transition(
        frozenset({AI}), HandoffState.WAITING_HUMAN, "You are being connected to a human agent.", "livechat_started"
    ),
    "take": Transition(frozenset({AI, WAITING}), HandoffState.HUMAN, "{human} joined the conversation.", None),
    "end": Transition(frozenset({WAITING, HUMAN}), HandoffState.AI, "The live chat has ended.", "livechat_ended"),
}

