"""Agent turns: build the ChatRequest, call the conversation's agent, store and deliver what it answers.

Turns of one conversation run one after another (a reply never overtakes the one before). A failing or
slow agent gives the client a stored ``general_error``, never silence. While a human has the
conversation no agent is called, and a reply that comes back after a human took over is dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable
from typing import Any

from ...errors import ConversationNotFound, ProtocolError
from ...protocol import (
    AgentMetadata,
    AgentResponse,
    ChannelMetadata,
    ChatRequest,
    IncomingAction,
    OutgoingAction,
)
from ...protocol.agent import InternalMetadata, UserInfo
from ..eager import await_within, start_eagerly
from ..handoff import HandoffConflict, HandoffState
from ..limits import Admission
from ..livechat import LiveChat
from ..locks import KeyedLocks
from ..metrics import Metrics
from ..store import Channel, ConversationRecord, NewEvent
from ..store.base import new_event
from ..store.rules import check_metadata_size
from ..timeline import Timeline, new_message_id
from . import agent_from_spec
from .base import Agent, AgentError, built, is_immediate

log = logging.getLogger("captivate_chat_api.server.agents")

_USER_FIELDS = ("firstName", "lastName", "email")
AI_ONLY = frozenset({HandoffState.AI.value})
"""The states an AI agent's answer may be stored in."""
PLATFORM_ACTIONS = ("escalateToHuman", "escalate_to_agent", "escalate_to_agent_router")


def build_request(
    conversation: ConversationRecord,
    *,
    user_input: str | None,
    action: IncomingAction | None,
    channel: Channel,
    files: list[dict[str, Any]] | None = None,
) -> ChatRequest:
    info = conversation.user_basic_info
    user = {k: info[k] for k in _USER_FIELDS if isinstance(info.get(k), str)} if info else {}
    if "firstName" not in user and isinstance(info.get("name"), str):
        user["firstName"] = info["name"]
    # Built, not validated: every part comes from our own store (validation here only copied, ~10 % of a
    # turn's CPU), and not by model_construct either (which walks every field's alias and default).
    # The dicts are copied, as validation did, so an agent that edits them edits its own.
    channel_metadata = _built(
        ChannelMetadata,
        {
            "user": _built(UserInfo, {"firstName": None, "lastName": None, "email": None, **user}, set(user)),
            "channelMetadata": {"channel": "custom-channel", "channelData": {"channelId": channel.id}},
            "custom": dict(conversation.metadata),
            "private": dict(conversation.private_metadata),
            "conversationCreatedAt": conversation.created_at,
            "conversationUpdatedAt": conversation.updated_at,
        },
    )
    metadata = _built(
        AgentMetadata, {"internal": _built(InternalMetadata, {"channelMetadata": channel_metadata})}
    )
    return _built(
        ChatRequest,
        {
            "session_id": conversation.id,
            "user_input": user_input,
            "files": files or [],
            "incoming_action": [action] if action else [],
            "hasLivechat": conversation.has_livechat,
            "metadata": metadata,
        },
    )


_built = built


def response_events(
    conversation: ConversationRecord, response: AgentResponse, message_id: str | None = None
) -> tuple[list[NewEvent], dict[str, Any], dict[str, Any]]:
    """The events an agent response becomes, and the (public, private) metadata patches it asks for.

    ``message_id`` is used for the first message (a streamed reply keeps the id its deltas carried).
    """
    events: list[NewEvent] = []
    for index, message in enumerate(response.response):
        if type(message) is dict:  # the common case (no attribute look-up that fails)
            content = message
        else:
            content = message.model_dump() if hasattr(message, "model_dump") else message
        mid = message_id if index == 0 and message_id else new_message_id()
        events.append(new_event("bot_message", {"content": content}, sender="bot", message_id=mid))
    plain = [a for a in response.outgoing_action or [] if a.id not in PLATFORM_ACTIONS]
    if plain:
        events.append(NewEvent("action", {"actions": [{"id": a.id, "data": a.body} for a in plain]}))
    public: dict[str, Any] = {}
    private: dict[str, Any] = {}
    if response.metadata is not None:
        channel = response.metadata.channel
        public = {k: v for k, v in channel.custom.items() if conversation.metadata.get(k, object()) != v}
        private = {
            k: v for k, v in channel.private.items() if conversation.private_metadata.get(k, object()) != v
        }
        title = public.get("conversation_title")
        if isinstance(title, str):
            events.append(
                NewEvent("conversation_update", {"type": "title_changed", "data": {"title": title}})
            )
    return events, public, private


class AgentRunner:
    def __init__(
        self,
        timeline: Timeline,
        livechat: LiveChat,
        *,
        timeout: float = 30.0,
        agent: Agent | None = None,
        metrics: Metrics | None = None,
        max_metadata_bytes: int = 16 * 1024,
        base_url: Callable[[], str] | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.admission = admission or Admission(0, 0)
        """The tenants' fair share of the gateway, shared with the client events (limits.Admission)."""
        self.max_metadata_bytes = max_metadata_bytes
        self._base_url = base_url
        self.timeline = timeline
        self.livechat = livechat
        self.timeout = timeout
        self._override = agent
        self._agents: dict[tuple[str, str, str | None], Agent] = {}
        self._turn_locks = KeyedLocks()
        self._tasks: set[asyncio.Task[None]] = set()

    def agent_for(self, channel: Channel, conversation: ConversationRecord | None = None) -> Agent:
        if self._override is not None:
            return self._override
        spec = channel.agent_spec(conversation.agent if conversation else None)
        # per channel and secret: two channels may share a URL, and a rotated secret takes effect
        key = (channel.id, spec, channel.webhook_secret)
        agent = self._agents.get(key)
        if agent is None:
            agent = self._agents[key] = agent_from_spec(
                spec, channel=channel, store=self.timeline.store, base_url=self._base_url
            )
        return agent

    def schedule(
        self,
        channel: Channel,
        conversation_id: str,
        *,
        user_input: str | None = None,
        action: IncomingAction | None = None,
        files: list[dict[str, Any]] | None = None,
        conversation: ConversationRecord | None = None,
    ) -> None:
        """Run a turn (after the client's acknowledgement is on its way). ``conversation``: the record as the
        user's message left it, if the caller has it (saves a read). With it, and an agent that answers at
        once (``immediate``: the demo agent, a plain-function ``python:`` agent), the turn runs on the
        caller's stack up to its store write and costs no task (see :mod:`.eager`); any other in a task."""
        turn = self.run_turn(
            channel,
            conversation_id,
            user_input=user_input,
            action=action,
            files=files,
            conversation=conversation,
        )
        if conversation is not None and is_immediate(self._agent_or_none(channel, conversation)):
            # in a context of its own, as a task would be: the admission slot it enters (limits._holding)
            # must not stay behind in the caller's context when the turn goes on in a task
            contextvars.copy_context().run(start_eagerly, turn, self._tasks)
            return
        task = asyncio.get_running_loop().create_task(turn)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _agent_or_none(self, channel: Channel, conversation: ConversationRecord) -> Agent | None:
        try:
            return self.agent_for(channel, conversation)
        except Exception:  # noqa: BLE001 -- a misconfigured agent: the turn says so, in a task of its own
            return None

    async def drain(self, timeout: float) -> None:
        """Wait for turns in flight (graceful shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def cancel(self) -> None:
        """Cancel the turns still running (after :meth:`drain`): none may hold a store connection while the
        store closes. A cancelled turn's reply is not stored; the client asks again after reconnecting."""
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)

    async def run_turn(
        self,
        channel: Channel,
        conversation_id: str,
        *,
        user_input: str | None,
        action: IncomingAction | None,
        files: list[dict[str, Any]] | None = None,
        conversation: ConversationRecord | None = None,
    ) -> None:
        try:
            lock = self._turn_locks(conversation_id)
            if (
                lock.locked()
            ):  # an earlier turn of this conversation is still running: ours reads afresh after it
                conversation = None
            async with lock:
                await self._turn(channel, conversation_id, user_input, action, files, conversation)
        except ConversationNotFound:
            log.info(
                "conversation %s was deleted during an agent turn",
                conversation_id,
                extra={"conversation_id": conversation_id},
            )
        except Exception:
            log.exception(
                "agent turn failed in conversation %s",
                conversation_id,
                extra={"conversation_id": conversation_id},
            )

    async def _turn(
        self,
        channel: Channel,
        conversation_id: str,
        user_input: str | None,
        action: IncomingAction | None,
        files: list[dict[str, Any]] | None = None,
        conversation: ConversationRecord | None = None,
    ) -> None:
        """One turn. Its work on the gateway holds one of the tenant's admission slots (limits.Admission,
        ahead of the tenant's waiting events): all of it for an agent that answers at once (the demo agent,
        a plain ``python:`` function), and for any other the preparation and the storing of its answer, not
        the wait for it (a slow webhook must not hold a slot for seconds)."""
        message_id = new_message_id()
        async with self.admission.slot(channel.id, turn=True):
            if conversation is None:
                conversation = await self.timeline.store.get_conversation(channel.id, conversation_id)
            if conversation is None or conversation.handoff != HandoffState.AI:
                return  # a human has (or is about to have) the conversation: the AI stays quiet
            request = build_request(
                conversation, user_input=user_input, action=action, channel=channel, files=files
            )
            agent = self._agent_or_none(channel, conversation)
            if is_immediate(agent):
                outcome = await self._call(channel, conversation, request, message_id, agent)
                await self._store(channel, conversation, outcome, message_id)
                return
        outcome = await self._call(channel, conversation, request, message_id, agent)
        async with self.admission.slot(channel.id, turn=True):
            await self._store(channel, conversation, outcome, message_id)

    async def _call(
        self,
        channel: Channel,
        conversation: ConversationRecord,
        request: ChatRequest,
        message_id: str,
        agent: Agent | None = None,
    ) -> AgentResponse | ProtocolError:
        """The agent's answer, or the error the client gets instead (a timeout, a failing agent).
        ``agent``: the conversation's, when the turn has it already (None: looked up here)."""
        conversation_id = conversation.id
        try:
            if agent is None:  # inside: a misconfigured agent is a general_error
                agent = self.agent_for(channel, conversation)
            stream = getattr(agent, "stream", None)
            if callable(stream):  # a StreamingAgent (isinstance on a Protocol is slow)
                call = stream(request, lambda delta: self._delta(conversation_id, message_id, delta))
            else:
                call = agent(request)
            kind = (
                "embedded"
                if self._override is not None
                else channel.agent_spec(conversation.agent).partition(":")[0]
            )
            timed = self.metrics.time_agent(kind, call)
            if is_immediate(agent):  # no task nor timer for an answer that is there at once
                response: AgentResponse = await await_within(timed, self.timeout)
            else:
                response = await asyncio.wait_for(timed, self.timeout)
        except TimeoutError:
            return ProtocolError(504, f"the agent did not answer within {self.timeout:g} s")
        except AgentError as exc:
            return ProtocolError(exc.error_code, exc.error_desc)
        except Exception as exc:
            log.exception(
                "agent %s raised",
                channel.agent_spec(conversation.agent),
                extra={"conversation_id": conversation_id},
            )
            return ProtocolError(502, f"the agent failed: {type(exc).__name__}")
        return response

    async def _store(
        self,
        channel: Channel,
        conversation: ConversationRecord,
        outcome: AgentResponse | ProtocolError,
        message_id: str,
    ) -> None:
        if isinstance(outcome, ProtocolError):
            await self._fail(channel, conversation.id, outcome.error_code, outcome.error_desc)
            return
        try:
            await self.apply(channel, conversation, outcome, message_id=message_id)
        except ProtocolError as exc:  # e.g. metadata over the limit: the client learns, nothing is stored
            await self._fail(
                channel, conversation.id, exc.error_code, f"the agent's answer was refused: {exc.error_desc}"
            )

    async def apply(
        self,
        channel: Channel,
        conversation: ConversationRecord,
        response: AgentResponse,
        *,
        message_id: str | None = None,
    ) -> bool:
        """Store and deliver an agent response (a turn's, or one pushed later). False if a human has the
        conversation by now: the reply is dropped, never shown over a person, and its metadata is not
        written either. The hand-off check, the metadata and the events are one store step, so a turn
        superseded by a take-over (or any refused answer) changes nothing, and a client that sees the events
        (a title_changed) and asks for the metadata finds it written. Metadata over the limit raises a 413
        ProtocolError before anything is written."""
        events, public, private = response_events(conversation, response, message_id)
        patch = None
        if public or private:
            check_metadata_size(self.max_metadata_bytes, conversation, public, private)
            patch = (public, private)
        if patch is None and events:  # a reply (the common case): the guard and the append, no record
            if (
                await self.timeline.append_if(channel.id, conversation.id, events, allowed_from=AI_ONLY)
                is None
            ):
                return self._dropped(conversation.id)
        elif events or patch is not None:
            result = await self.timeline.transition(
                channel.id, conversation.id, allowed_from=AI_ONLY, events=events, metadata=patch
            )
            if result is None:
                return self._dropped(conversation.id)
        for action in response.outgoing_action or []:
            await self._platform_action(channel, conversation.id, action)
        return True

    @staticmethod
    def _dropped(conversation_id: str) -> bool:
        log.info(
            "dropped an agent reply in %s: a human has the conversation",
            conversation_id,
            extra={"conversation_id": conversation_id},
        )
        return False

    async def _platform_action(self, channel: Channel, conversation_id: str, action: OutgoingAction) -> None:
        body = action.body if isinstance(action.body, dict) else {}
        if action.id == "escalateToHuman":
            try:
                await self.livechat.apply(channel.id, conversation_id, "escalate", reason=body.get("reason"))
            except HandoffConflict as exc:
                log.info("escalateToHuman ignored: %s", exc)
        elif action.id == "escalate_to_agent" and isinstance(body.get("agent_id"), str):
            await self.livechat.switch_agent(
                channel.id,
                conversation_id,
                body["agent_id"],
                {k: v for k, v in body.items() if k != "agent_id"},
            )
        elif action.id == "escalate_to_agent_router":
            await self.livechat.switch_agent(channel.id, conversation_id, "router", dict(body))

    def _delta(self, conversation_id: str, message_id: str, delta: str) -> None:
        """Partial text of a streamed reply: sent live, not stored (the full message is)."""
        from ...protocol import BotMessageDelta

        frame = BotMessageDelta(
            conversation_id=conversation_id, message_id=message_id, delta=delta
        ).to_frame()
        self.timeline.hub.broadcast(conversation_id, frame)

    async def _fail(self, channel: Channel, conversation_id: str, code: int, desc: str) -> None:
        await self.timeline.append(
            channel.id,
            conversation_id,
            [NewEvent("general_error", {"error_code": code, "error_desc": desc})],
        )
