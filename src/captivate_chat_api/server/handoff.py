"""Human hand-off as a transition table keyed by ``(state, event, actor)`` (in the manner of h11's ``_state.py``).

    ai ──escalate──▶ waiting_human ──take──▶ human ──end (the owner)──▶ ai
     └────────────────take (a human steps in)───▶ human ──take_over (another human)──▶ human
                      waiting_human ──end (nobody came)──▶ ai

The actor is who asks, relative to the conversation: ``owner`` (the human agent who has it), ``supervisor``
(a human agent with a supervisor token who does not own it), ``other`` (any other human agent of the
channel) or ``any``. Only the owner, or a supervisor, replies in or ends a live chat (a supervisor's reply
or end is stored as such); another agent gets it only by an explicit ``take_over``, which is stored as a
transfer (from whom, to whom).

Every transition is stored atomically with its events (a ``system_message`` for the transcript, and a
``conversation_update`` where the client must learn of it). While the state is not ``ai`` no AI agent is
called, and a late AI reply or push is refused: the bot never talks over a person.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..errors import HandoffConflict as HandoffConflict  # noqa: PLC0414 (re-exported: the one tree's)


class HandoffState(str, enum.Enum):
    AI = "ai"
    WAITING_HUMAN = "waiting_human"
    HUMAN = "human"


class HandoffEvent(str, enum.Enum):
    ESCALATE = "escalate"
    TAKE = "take"
    TAKE_OVER = "take_over"
    REPLY = "reply"
    END = "end"


class Actor(str, enum.Enum):
    ANY = "any"
    OWNER = "owner"
    SUPERVISOR = "supervisor"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Transition:
    target: HandoffState
    system_text: str | None
    """The transcript's ``system_message`` (``{human}``: the acting agent, ``{previous}``: the former owner)."""
    update_type: str | None
    """The ``conversation_update`` the client gets, if any (``livechat_started`` / ``livechat_ended``)."""


AI, WAITING, HUMAN = HandoffState.AI, HandoffState.WAITING_HUMAN, HandoffState.HUMAN
_JOINED = "{human} joined the conversation."
_ENDED = "The live chat has ended."

TABLE: dict[tuple[HandoffState, HandoffEvent, Actor], Transition] = {
    (AI, HandoffEvent.ESCALATE, Actor.ANY): Transition(
        WAITING, "You are being connected to a human agent.", "livechat_started"
    ),
    # a human stepped in without an escalation: the client learns that live chat started
    (AI, HandoffEvent.TAKE, Actor.ANY): Transition(HUMAN, _JOINED, "livechat_started"),
    (WAITING, HandoffEvent.TAKE, Actor.ANY): Transition(HUMAN, _JOINED, None),
    (HUMAN, HandoffEvent.TAKE_OVER, Actor.OTHER): Transition(
        HUMAN, "{human} took over the conversation from {previous}.", None
    ),
    (HUMAN, HandoffEvent.TAKE_OVER, Actor.SUPERVISOR): Transition(
        HUMAN, "{human} took over the conversation from {previous}.", None
    ),
    (HUMAN, HandoffEvent.REPLY, Actor.OWNER): Transition(HUMAN, None, None),
    (HUMAN, HandoffEvent.REPLY, Actor.SUPERVISOR): Transition(HUMAN, None, None),
    (WAITING, HandoffEvent.END, Actor.ANY): Transition(AI, _ENDED, "livechat_ended"),
    (HUMAN, HandoffEvent.END, Actor.OWNER): Transition(AI, _ENDED, "livechat_ended"),
    (HUMAN, HandoffEvent.END, Actor.SUPERVISOR): Transition(
        AI, "{human} (supervisor) ended the live chat of {previous}.", "livechat_ended"
    ),
}


def actor_of(owner: str | None, agent_id: str | None, *, supervisor: bool = False) -> Actor:
    """``owner`` when ``agent_id`` has the conversation, ``supervisor`` or ``other`` for another agent (with
    or without a supervisor token), ``any`` for no agent."""
    if agent_id is None:
        return Actor.ANY
    if owner is not None and owner == agent_id:
        return Actor.OWNER
    return Actor.SUPERVISOR if supervisor else Actor.OTHER


def next_transition(state: str, event: HandoffEvent, actor: Actor) -> Transition:
    """The transition for ``event`` by ``actor`` from ``state``; HandoffConflict when there is none."""
    current = HandoffState(state)
    rule = TABLE.get((current, event, actor)) or TABLE.get((current, event, Actor.ANY))
    if rule is None:
        raise HandoffConflict(event.value, current.value, by_other=actor is Actor.OTHER)
    return rule


def sources_of(event: HandoffEvent) -> frozenset[str]:
    """Every state that ``event`` may leave (for guards that do not read the state first)."""
    return frozenset(state.value for state, ev, _ in TABLE if ev is event)
