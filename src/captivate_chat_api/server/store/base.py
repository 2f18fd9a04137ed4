"""The store interface: what the gateway needs from durable storage.

Every write that the gateway acknowledges is committed before the method returns. ``seq`` is assigned
inside the same transaction as the event row, per conversation, 1, 2, 3 ... with no gaps.

Every method of a conversation takes its tenant, ``channel_id``, and the SQL filters by it: another
channel's conversation looks unknown (None, an empty list, or :class:`~captivate_chat_api.errors.ConversationNotFound`).
The decisions both backends share (the hand-off guard, pagination, metadata merge, the ``client_msg_id``
retry rule, edits) are the pure functions of :mod:`.rules`; a backend only runs SQL.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def quick(cls: Callable[P, T]) -> Callable[P, T]:
    """A faster constructor of the frozen, slotted dataclass ``cls``: the same parameters and defaults, an
    equal instance of ``cls`` (frozen like any other).

    A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__`` (its own
    ``__setattr__`` refuses): a call per field, six times the cost of a plain slot store for a
    conversation's 14. This builds a mutable twin with the same slots (plain stores), then makes it a
    ``cls`` (``__class__`` assignment, allowed between classes of one layout). For the records built on
    every message (:func:`.rows.conversation_of`, the appended events, :class:`NewEvent`)."""
    assert isinstance(cls, type) and dataclasses.is_dataclass(cls)
    assert "__slots__" in cls.__dict__ and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
    spec: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for f in dataclasses.fields(cls):
        if f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: a default factory is not supported")
        if f.default is dataclasses.MISSING:
            spec.append((f.name, f.type))
        else:
            spec.append((f.name, f.type, field(default=f.default)))

    def become(self: Any) -> None:
        self.__class__ = cls

    twin = dataclasses.make_dataclass(
        f"_Quick{cls.__name__}",
        spec,
        namespace={"__post_init__": become},
        slots=True,
        eq=False,
        repr=False,
        match_args=False,
    )
    assert twin.__slots__ == cls.__slots__  # type: ignore[attr-defined]  # the same layout
    return twin  # its instances turn into cls's in __post_init__


@dataclass(frozen=True, slots=True)
class Channel:
    """A tenant: one custom channel. Every API key belongs to exactly one channel."""

    id: str
    name: str
    agent: str = "demo"
    """The spec of the channel's default agent (``demo``, ``webhook:URL``, ``openai:MODEL``, ``python:mod:attr``)."""
    agents: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    """Named agents that ``escalate_to_agent`` can switch to: name -> spec."""
    webhook_secret: str | None = field(default=None, repr=False, compare=False)

    def agent_spec(self, name: str | None) -> str:
        """The spec an agent name resolves to; the default agent for None or an unknown name."""
        if name and name in self.agents:
            return self.agents[name]
        return self.agent


@dataclass(frozen=True, slots=True)
class AgentTokenInfo:
    id: str
    channel_id: str
    prefix: str
    role: str
    """``push`` (an AI agent answering later), ``human`` (a live-chat agent) or ``supervisor`` (a live-chat
    agent who may also reply in and end other agents' live chats)."""
    label: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: str
    channel_id: str
    prefix: str
    label: str
    created_at: str
    revoked_at: str | None


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    channel_id: str
    user_id: str
    user_basic_info: dict[str, Any]
    metadata: dict[str, Any]
    private_metadata: dict[str, Any]
    last_seq: int
    created_at: str
    updated_at: str
    deleted_at: str | None = None
    handoff: str = "ai"
    """``ai`` | ``waiting_human`` | ``human`` (see :mod:`..handoff`)."""
    human_agent: str | None = None
    agent: str | None = None
    """The named agent in charge after ``escalate_to_agent``; None: the channel's default."""
    has_livechat: bool = False
    """The conversation has been handed to a human at least once (``hasLivechat`` for the agent)."""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of a conversation's log, as stored and as sent (``payload`` excludes the ids)."""

    conversation_id: str
    seq: int
    event_type: str
    payload: dict[str, Any]
    created_at: str
    sender: str | None = None
    message_id: str | None = None
    client_msg_id: str | None = None
    edited_at: str | None = None

    def wire_payload(self) -> dict[str, Any]:
        """The payload with the reliability fields (ours) that every sent event carries."""
        out: dict[str, Any] = {"conversation_id": self.conversation_id, **self.payload, "seq": self.seq}
        if self.message_id is not None:
            out["message_id"] = self.message_id
        if self.client_msg_id is not None:
            out["client_msg_id"] = self.client_msg_id
        return out


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append; the store assigns ``seq`` (and ``created_at``)."""

    event_type: str
    payload: dict[str, Any]
    sender: str | None = None
    message_id: str | None = None
    client_msg_id: str | None = None


new_conversation_record = quick(ConversationRecord)
new_stored_event = quick(StoredEvent)
new_event = quick(NewEvent)
"""Faster constructors of the records built on every message (see :func:`quick`)."""


@dataclass(frozen=True, slots=True)
class ConversationPage:
    items: list[ConversationRecord]
    total: int
    page: int
    page_size: int


@dataclass(slots=True)
class ListQuery:
    """User listing: ``filter`` matches metadata keys by equality, ``search`` by substring (ours)."""

    channel_ids: list[str]
    user_id: str
    filter: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] = field(default_factory=dict)
    page: int = 1
    limit: int | None = None


EDITABLE_BY: dict[str, frozenset[str]] = {
    "client": frozenset({"user"}),
    "human_agent": frozenset({"human_agent"}),
    "bot": frozenset({"bot"}),
}
"""Who may edit what: a client only the user's own messages (the npm client's file-URL refresh edits
those), an agent only its own. Nobody rewrites what someone else said."""


def editable_by(actor: str) -> frozenset[str]:
    """The senders whose messages ``actor`` (``client`` | ``human_agent`` | ``bot``) may edit."""
    return EDITABLE_BY.get(actor, frozenset())


class EditForbidden(Exception):
    """An edit of a message the editor did not write (nothing is changed)."""

    def __init__(self, sender: str | None) -> None:
        super().__init__(
            f"this message was written by {sender or 'the platform'}: only its author may edit it"
        )
        self.sender = sender


class Store(abc.ABC):
    """Durable storage. Implementations: :class:`~.sqlite.SQLiteStore`, :class:`~.postgres.PostgresStore`."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> None:
        """Raise if the store cannot serve."""

    async def ping_write(self) -> None:
        """Raise if the store cannot take a write now (readiness); a no-op write where the store has one."""
        await self.ping()

    # channels and keys
    @abc.abstractmethod
    async def create_channel_with_key(
        self, name: str, key_hash: str, prefix: str, agent: str = "demo"
    ) -> Channel: ...

    @abc.abstractmethod
    async def add_key(self, channel_id: str, key_hash: str, prefix: str, label: str = "") -> ApiKeyInfo: ...

    @abc.abstractmethod
    async def channel_for_key_hash(self, key_hash: str) -> Channel | None:
        """The channel of an active (not revoked) key, else None."""

    @abc.abstractmethod
    async def key_exists(self, key_hash: str) -> bool:
        """True when the key is known, revoked or not."""

    @abc.abstractmethod
    async def list_keys(self) -> list[ApiKeyInfo]: ...

    @abc.abstractmethod
    async def revoke_key(self, key_id_or_prefix: str) -> ApiKeyInfo | None: ...

    @abc.abstractmethod
    async def get_channel(self, channel_id: str) -> Channel | None: ...

    @abc.abstractmethod
    async def update_channel(
        self,
        channel_id: str,
        *,
        agent: str | None = None,
        agents: dict[str, str] | None = None,
        webhook_secret: str | None = None,
    ) -> Channel | None:
        """Set the default agent spec, merge named agents, set the webhook secret (what is not None)."""

    @abc.abstractmethod
    async def add_agent_token(
        self, channel_id: str, token_hash: str, prefix: str, role: str, label: str = ""
    ) -> AgentTokenInfo: ...

    @abc.abstractmethod
    async def channel_for_agent_token(
        self, token_hash: str, role: str
    ) -> tuple[Channel, AgentTokenInfo] | None: ...

    @abc.abstractmethod
    async def list_agent_tokens(self, channel_id: str | None = None) -> list[AgentTokenInfo]:
        """The agent tokens of one channel; every channel's with None (the operator's CLI)."""

    @abc.abstractmethod
    async def revoke_agent_token(self, token_id_or_prefix: str) -> AgentTokenInfo | None: ...

    # conversations
    @abc.abstractmethod
    async def create_conversation(
        self,
        channel_id: str,
        conversation_id: str,
        user_id: str,
        user_basic_info: dict[str, Any],
        metadata: dict[str, Any],
        private_metadata: dict[str, Any],
    ) -> ConversationRecord: ...

    @abc.abstractmethod
    async def get_conversation(self, channel_id: str, conversation_id: str) -> ConversationRecord | None:
        """A live (not deleted) conversation of that channel, else None: foreign ids look unknown."""

    @abc.abstractmethod
    async def update_metadata(
        self, channel_id: str, conversation_id: str, public: dict[str, Any], private: dict[str, Any]
    ) -> ConversationRecord | None:
        """Merge both patches (shallow) into the stored metadata; None if the conversation is unknown."""

    @abc.abstractmethod
    async def delete_conversation(self, channel_id: str, conversation_id: str, soft: bool) -> bool: ...

    @abc.abstractmethod
    async def delete_user_conversations(self, channel_id: str, user_id: str, soft: bool) -> int: ...

    @abc.abstractmethod
    async def list_conversations(self, query: ListQuery) -> ConversationPage: ...

    @abc.abstractmethod
    async def list_handoff(self, channel_id: str, states: list[str]) -> list[ConversationRecord]:
        """Live conversations of the channel whose hand-off state is one of ``states``, oldest change first."""

    @abc.abstractmethod
    async def transition(
        self,
        channel_id: str,
        conversation_id: str,
        *,
        allowed_from: frozenset[str],
        handoff: str | None = None,
        human_agent: str | None = None,
        agent: str | None = None,
        events: list[NewEvent],
        require_human_agent: str | None = None,
        metadata: tuple[dict[str, Any], dict[str, Any]] | None = None,
    ) -> tuple[ConversationRecord, list[StoredEvent]] | None:
        """Atomically: if the conversation's hand-off state is in ``allowed_from`` (and, with
        ``require_human_agent``, that agent owns it), set the new state/agent fields, merge ``metadata``
        (``(public, private)`` patches, shallow, as :meth:`update_metadata`) and append ``events``.
        None when the conversation is in another state (or owned by someone else): then nothing changed.
        ConversationNotFound if unknown (see :func:`.rules.transition_allowed`, :func:`.rules.transitioned`).
        ``human_agent`` "" clears the owner."""

    # the event log
    @abc.abstractmethod
    async def append_events(
        self, channel_id: str, conversation_id: str, events: list[NewEvent]
    ) -> list[StoredEvent]:
        """Append in order, assigning consecutive ``seq``; committed when this returns. ConversationNotFound
        for an unknown, deleted or foreign conversation."""

    async def append_if(
        self, channel_id: str, conversation_id: str, events: list[NewEvent], *, allowed_from: frozenset[str]
    ) -> list[StoredEvent] | None:
        """:meth:`append_events` only while the conversation's hand-off state is one of ``allowed_from`` (an
        AI agent's reply: the guard and the append in one step); None when it is in another state (nothing
        written). ConversationNotFound as :meth:`append_events`. :meth:`transition` without the conversation
        record it returns (a backend may skip reading and building it)."""
        result = await self.transition(channel_id, conversation_id, allowed_from=allowed_from, events=events)
        return None if result is None else result[1]

    async def append_user_message(
        self, channel_id: str, conversation_id: str, event: NewEvent
    ) -> tuple[StoredEvent, bool]:
        """Append a user message once per ``client_msg_id``: ``(event, created)``.

        A stored user message with the same ``client_msg_id`` *and* the same payload is a retry
        (:func:`.rules.retry_of`): it is returned with ``created=False`` and nothing is written. Raises
        ConversationNotFound like :meth:`append_events`, for a retry too.
        """
        stored, created, _ = await self.append_user_turn(channel_id, conversation_id, event)
        return stored, created

    @abc.abstractmethod
    async def append_user_turn(
        self, channel_id: str, conversation_id: str, event: NewEvent
    ) -> tuple[StoredEvent, bool, ConversationRecord | None]:
        """:meth:`append_user_message`, plus the conversation as it is right after the append (None for a
        retry): the agent turn that follows uses it instead of reading the conversation again."""

    @abc.abstractmethod
    async def events_after(
        self, channel_id: str, conversation_id: str, after_seq: int, limit: int = 1000
    ) -> list[StoredEvent]:
        """Up to ``limit`` events after ``after_seq``, oldest first; none of another channel's conversation."""

    @abc.abstractmethod
    async def messages(self, channel_id: str, conversation_id: str) -> list[StoredEvent]:
        """The transcript's events (those with a sender), oldest first; none of another channel's conversation."""

    @abc.abstractmethod
    async def edit_message(
        self,
        channel_id: str,
        conversation_id: str,
        message_id: str,
        content: Any,
        *,
        senders: frozenset[str] | None = None,
    ) -> StoredEvent | None:
        """Replace a message's content; None if there is no such message (in that channel's conversation).
        With ``senders``, a message of another sender raises :class:`EditForbidden` and nothing changes."""
