"""Live chat operations: hand a conversation to a human and back, human messages, agent switches."""

from __future__ import annotations

from typing import Any

from ..protocol import HandoffUpdate, text_content
from .handoff import HUMAN, TRANSITIONS, HandoffConflict
from .store import ConversationRecord, NewEvent, StoredEvent
from .timeline import Timeline, new_message_id

ANY_STATE = frozenset({"ai", "waiting_human", "human"})


def system_message(text: str, **extra: Any) -> NewEvent:
    return NewEvent("system_message", {"content": text_content(text), **extra}, sender="system", message_id=new_message_id())


class LiveChat:
    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.hub = timeline.hub

    async def _current_state(self, channel_id: str, conversation_id: str) -> str:
        record = await self.timeline.store.get_conversation(channel_id, conversation_id)
        if record is None:
            raise LookupError(conversation_id)
        return record.handoff

    async def apply(
        self, channel_id: str, conversation_id: str, name: str, *, human: str | None = None, reason: str | None = None
    ) -> ConversationRecord:
        """Run hand-off transition ``name`` (escalate | take | end). Raises HandoffConflict or LookupError."""
        transition = TRANSITIONS[name]
        events = [system_message(transition.system_text.format(human=human or "A human agent"), handoff=transition.target.value)]
        data: dict[str, Any] = {"state": transition.target.value}
        if reason:
            data["reason"] = reason
        if human:
            data["human_agent"] = human
        update_type = transition.update_type
        if name == "take":
            state = await self._current_state(channel_id, conversation_id)
            if state == "ai":  # a human stepped in without an escalation: the client learns live chat started
                update_type = "livechat_started"
        if update_type:
            events.append(NewEvent("conversation_update", {"type": update_type, "data": data}))
        result = await self.timeline.transition(
            channel_id,
            conversation_id,
            allowed_from=transition.sources,
            handoff=transition.target.value,
            human_agent=human if name == "take" else ("" if name == "end" else None),
            events=events,
        )
        if result is None:
            raise HandoffConflict(name, await self._current_state(channel_id, conversation_id))
        record = result[0]
        self.notify(record)
        return record

    async def human_message(self, channel_id: str, conversation_id: str, human: str, content: Any) -> StoredEvent:
        """A message from the human who owns the live chat, delivered as ``livechat_message``."""
        event = NewEvent("livechat_message", {"content": content}, sender="human_agent", message_id=new_message_id())
        result = await self.timeline.transition(
            channel_id,
            conversation_id,
            allowed_from=frozenset({HUMAN}),
            require_human_agent=human,
            events=[event],
        )
        if result is None:
            raise HandoffConflict("send", await self._current_state(channel_id, conversation_id))
        return result[1][0]

    async def switch_agent(self, channel_id: str, conversation_id: str, agent_id: str, data: dict[str, Any]) -> ConversationRecord:
        """``escalate_to_agent`` / ``escalate_to_agent_router``: another AI agent takes the conversation."""
        result = await self.timeline.transition(
            channel_id,
            conversation_id,
            allowed_from=ANY_STATE,
            agent=agent_id,
            events=[NewEvent("conversation_update", {"type": "agent_changed", "data": {"agent_id": agent_id, **data}})],
        )
        if result is None:  # cannot happen: every state is allowed
            raise HandoffConflict("switch agent", "unknown")
        return result[0]

    def notify(self, record: ConversationRecord) -> None:
        """Tell the channel's human agents (console sockets) that the queue changed."""
        update = HandoffUpdate(conversation_id=record.id, state=record.handoff, human_agent=record.human_agent)
        self.hub.notify_channel(record.channel_id, update.to_frame())
