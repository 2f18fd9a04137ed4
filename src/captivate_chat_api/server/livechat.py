"""Live chat operations: hand a conversation to a human and back, human messages, agent switches.

Who acts is an :class:`AgentIdentity` taken from the credential (a ``human`` token is one agent with a
display name), never a name typed in a request. The conversation records the owning agent's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConversationNotFound
from ..protocol import HandoffUpdate, text_content
from .handoff import (
    Actor,
    HandoffConflict,
    HandoffEvent,
    HandoffState,
    Transition,
    actor_of,
    next_transition,
)
from .store import ConversationRecord, NewEvent, StoredEvent
from .timeline import Timeline, new_message_id

ANY_STATE = frozenset(state.value for state in HandoffState)


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """A human agent: the id of its token and the name users see; ``supervisor``: its token has the
    supervisor role (it may also reply in and end other agents' live chats)."""

    id: str
    name: str
    supervisor: bool = False


def system_message(text: str, **extra: Any) -> NewEvent:
    return NewEvent(
        "system_message",
        {"content": text_content(text), **extra},
        sender="system",
        message_id=new_message_id(),
    )


class LiveChat:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.hub = timeline.hub

    async def _current(self, channel_id: str, conversation_id: str) -> ConversationRecord:
        record = await self.timeline.store.get_conversation(channel_id, conversation_id)
        if record is None:
            raise ConversationNotFound(conversation_id)
        return record

    def _events(
        self,
        rule: Transition,
        event: HandoffEvent,
        actor: Actor,
        agent: AgentIdentity | None,
        current: ConversationRecord,
        reason: str | None,
        previous_name: str | None,
    ) -> list[NewEvent]:
        events: list[NewEvent] = []
        if rule.system_text:
            text = rule.system_text.format(
                human=agent.name if agent else "A human agent", previous=previous_name or "another agent"
            )
            extra: dict[str, Any] = {"handoff": rule.target.value}
            if event is HandoffEvent.TAKE_OVER and agent is not None:
                extra["transfer"] = {"from": current.human_agent, "to": agent.id}
            if actor is Actor.SUPERVISOR and event is not HandoffEvent.TAKE_OVER and agent is not None:
                extra["supervisor"] = {"id": agent.id, "owner": current.human_agent}
            events.append(system_message(text, **extra))
        if rule.update_type:
            data: dict[str, Any] = {"state": rule.target.value}
            if reason:
                data["reason"] = reason
            if agent is not None and rule.target is HandoffState.HUMAN:
                data["human_agent"] = agent.name
            events.append(NewEvent("conversation_update", {"type": rule.update_type, "data": data}))
        return events

    async def apply(
        self,
        channel_id: str,
        conversation_id: str,
        event: HandoffEvent | str,
        *,
        agent: AgentIdentity | None = None,
        reason: str | None = None,
        previous_name: str | None = None,
    ) -> ConversationRecord:
        """Run hand-off ``event`` (escalate | take | take_over | end) as ``agent`` (None: the AI agent or the
        platform). Raises HandoffConflict or ConversationNotFound.

        The rule is chosen from the state read first, and the store applies it only if the conversation is
        still in that state (and with that owner): a concurrent change makes this a conflict, never a
        transition chosen for another state."""
        event = HandoffEvent(event)
        current = await self._current(channel_id, conversation_id)
        actor = actor_of(
            current.human_agent, agent.id if agent else None, supervisor=bool(agent and agent.supervisor)
        )
        rule = next_transition(current.handoff, event, actor)
        owner_change: str | None = None
        if rule.target is HandoffState.HUMAN and agent is not None:
            owner_change = agent.id
        elif rule.target is HandoffState.AI:
            owner_change = ""
        result = await self.timeline.transition(
            channel_id,
            conversation_id,
            allowed_from=frozenset({current.handoff}),
            require_human_agent=current.human_agent if current.handoff == HandoffState.HUMAN else None,
            handoff=rule.target.value,
            human_agent=owner_change,
            events=self._events(rule, event, actor, agent, current, reason, previous_name),
        )
        if result is None:
            raise HandoffConflict(event.value, (await self._current(channel_id, conversation_id)).handoff)
        record = result[0]
        self.notify(record, agent.name if agent and rule.target is HandoffState.HUMAN else None)
        return record

    async def human_message(
        self, channel_id: str, conversation_id: str, agent: AgentIdentity, content: Any
    ) -> StoredEvent:
        """A message from the human who owns the live chat (or from a supervisor: stored with
        ``supervisor: true``), delivered as ``livechat_message`` with the agent's display name
        (``agent_name``)."""
        current = await self._current(channel_id, conversation_id)
        actor = actor_of(current.human_agent, agent.id, supervisor=agent.supervisor)
        next_transition(current.handoff, HandoffEvent.REPLY, actor)
        payload: dict[str, Any] = {"content": content, "agent_name": agent.name}
        if actor is Actor.SUPERVISOR:
            payload["supervisor"] = True
        event = NewEvent("livechat_message", payload, sender="human_agent", message_id=new_message_id())
        result = await self.timeline.transition(
            channel_id,
            conversation_id,
            allowed_from=frozenset({HandoffState.HUMAN.value}),
            require_human_agent=current.human_agent,  # the owner it was checked against: still the same
            events=[event],
        )
        if result is None:
            raise HandoffConflict(
                HandoffEvent.REPLY.value, (await self._current(channel_id, conversation_id)).handoff
            )
        return result[1][0]

    async def switch_agent(
        self, channel_id: str, conversation_id: str, agent_id: str, data: dict[str, Any]
    ) -> ConversationRecord:
        """``escalate_to_agent`` / ``escalate_to_agent_router``: another AI agent takes the conversation."""
        result = await self.timeline.transition(
            channel_id,
            conversation_id,
            allowed_from=ANY_STATE,
            agent=agent_id,
            events=[
                NewEvent(
                    "conversation_update", {"type": "agent_changed", "data": {"agent_id": agent_id, **data}}
                )
            ],
        )
        if result is None:  # cannot happen: every state is allowed
            raise HandoffConflict("switch agent", "unknown")
        return result[0]

    def notify(self, record: ConversationRecord, human_name: str | None = None) -> None:
        """Tell the channel's human agents (console sockets) that the queue changed."""
        update = HandoffUpdate(
            conversation_id=record.id,
            state=record.handoff,
            human_agent=human_name if record.human_agent else None,
            human_agent_id=record.human_agent,
        )
        self.hub.notify_channel(record.channel_id, update.to_frame())
