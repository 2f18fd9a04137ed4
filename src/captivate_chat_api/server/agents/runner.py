"""Agent turns: build the ChatRequest, call the channel's agent, store and deliver what it answers.

Turns of one conversation run one after another (a reply never overtakes the one before); a failing
or slow agent gives the client a stored ``general_error``, never silence.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...protocol import AgentMetadata, AgentResponse, ChannelMetadata, ChatRequest, IncomingAction
from ..locks import KeyedLocks
from ..store import Channel, ConversationRecord, NewEvent
from ..timeline import Timeline, new_message_id
from . import agent_from_spec
from .base import Agent, AgentError

log = logging.getLogger("captivate_chat_api.server.agents")

_USER_FIELDS = ("firstName", "lastName", "email")


def build_request(
    conversation: ConversationRecord, *, user_input: str | None, action: IncomingAction | None, channel: Channel
) -> ChatRequest:
    info = conversation.user_basic_info
    user = {k: info[k] for k in _USER_FIELDS if isinstance(info.get(k), str)}
    if "firstName" not in user and isinstance(info.get("name"), str):
        user["firstName"] = info["name"]
    metadata = AgentMetadata.model_validate(
        {
            "internal": {
                "channelMetadata": ChannelMetadata.model_validate(
                    {
                        "user": user,
                        "channelMetadata": {"channel": "custom-channel", "channelData": {"channelId": channel.id}},
                        "custom": conversation.metadata,
                        "private": conversation.private_metadata,
                        "conversationCreatedAt": conversation.created_at,
                        "conversationUpdatedAt": conversation.updated_at,
                    }
                )
            }
        }
    )
    return ChatRequest(
        session_id=conversation.id,
        user_input=user_input,
        incoming_action=[action] if action else [],
        hasLivechat=False,
        metadata=metadata,
    )


def response_events(conversation: ConversationRecord, response: AgentResponse) -> tuple[list[NewEvent], dict[str, Any], dict[str, Any]]:
    """The events an agent response becomes, and the (public, private) metadata patches it asks for."""
    events: list[NewEvent] = []
    for message in response.response:
        content = message.model_dump() if hasattr(message, "model_dump") else message
        events.append(
            NewEvent("bot_message", {"content": content}, sender="bot", message_id=new_message_id())
        )
    if response.outgoing_action:
        events.append(
            NewEvent("action", {"actions": [{"id": a.id, "data": a.body} for a in response.outgoing_action]})
        )
    public: dict[str, Any] = {}
    private: dict[str, Any] = {}
    if response.metadata is not None:
        channel = response.metadata.channel
        public = {k: v for k, v in channel.custom.items() if conversation.metadata.get(k, object()) != v}
        private = {k: v for k, v in channel.private.items() if conversation.private_metadata.get(k, object()) != v}
        title = public.get("conversation_title")
        if isinstance(title, str):
            events.append(
                NewEvent("conversation_update", {"type": "title_changed", "data": {"title": title}})
            )
    return events, public, private


class AgentRunner:
    def __init__(self, timeline: Timeline, *, timeout: float = 30.0, agent: Agent | None = None) -> None:
        self.timeline = timeline
        self.timeout = timeout
        self._override = agent
        self._agents: dict[str, Agent] = {}
        self._turn_locks = KeyedLocks()
        self._tasks: set[asyncio.Task[None]] = set()

    def agent_for(self, channel: Channel) -> Agent:
        if self._override is not None:
            return self._override
        agent = self._agents.get(channel.agent)
        if agent is None:
            agent = self._agents[channel.agent] = agent_from_spec(channel.agent)
        return agent

    def schedule(
        self, channel: Channel, conversation_id: str, *, user_input: str | None = None, action: IncomingAction | None = None
    ) -> None:
        """Run a turn in the background (after the client's acknowledgement is on its way)."""
        task = asyncio.create_task(self.run_turn(channel, conversation_id, user_input=user_input, action=action))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout: float) -> None:
        """Wait for turns in flight (graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def run_turn(
        self, channel: Channel, conversation_id: str, *, user_input: str | None, action: IncomingAction | None
    ) -> None:
        try:
            async with self._turn_locks(conversation_id):
                await self._turn(channel, conversation_id, user_input, action)
        except LookupError:
            log.info("conversation %s was deleted during an agent turn", conversation_id)
        except Exception:
            log.exception("agent turn failed in conversation %s", conversation_id)

    async def _turn(
        self, channel: Channel, conversation_id: str, user_input: str | None, action: IncomingAction | None
    ) -> None:
        store = self.timeline.store
        conversation = await store.get_conversation(channel.id, conversation_id)
        if conversation is None:
            return
        request = build_request(conversation, user_input=user_input, action=action, channel=channel)
        try:
            response = await asyncio.wait_for(self.agent_for(channel)(request), self.timeout)
        except TimeoutError:
            await self._fail(channel, conversation_id, 504, f"the agent did not answer within {self.timeout:g} s")
            return
        except AgentError as exc:
            await self._fail(channel, conversation_id, exc.error_code, exc.error_desc)
            return
        except Exception as exc:
            log.exception("agent %s raised", channel.agent)
            await self._fail(channel, conversation_id, 502, f"the agent failed: {type(exc).__name__}")
            return
        events, public, private = response_events(conversation, response)
        if public or private:
            await store.update_metadata(channel.id, conversation_id, public, private)
        await self.timeline.append(channel.id, conversation_id, events)

    async def _fail(self, channel: Channel, conversation_id: str, code: int, desc: str) -> None:
        await self.timeline.append(
            channel.id,
            conversation_id,
            [NewEvent("general_error", {"error_code": code, "error_desc": desc})],
        )
