"""The store's business rules, as pure functions: both backends (SQLite and PostgreSQL) run their SQL and
leave every decision to these, so the two cannot drift apart. Nothing here does I/O.

- **liveness**: a conversation that is unknown, deleted or another channel's is :class:`ConversationNotFound`;
- **hand-off guard**: a transition applies only from one of its allowed states (and with that owner);
- **pagination**: a listing's window (limit, offset) and the page it answers;
- **metadata**: shallow merge of a patch, and the size limit on the merged result;
- **the ``client_msg_id`` retry rule**: when a repeated user message is a retry (answered with the stored
  event, nothing written) and when it is a new message;
- **edits**: who may edit a message, and what the edit changes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, TypeVar

from ...errors import ConversationNotFound
from ..handoff import HandoffState
from ..limits import check_size
from .base import (
    Channel,
    ConversationPage,
    ConversationRecord,
    EditForbidden,
    ListQuery,
    NewEvent,
    StoredEvent,
)
from .query import V1_MAX_CONVERSATIONS

T = TypeVar("T")

# liveness


def require_live(found: T | None, conversation_id: str) -> T:
    """``found`` (a row or record of a live conversation of the caller's channel), else
    :class:`ConversationNotFound`: a foreign id looks exactly like an unknown one."""
    if found is None:
        raise ConversationNotFound(conversation_id)
    return found


# the hand-off guard


def transition_allowed(
    current: ConversationRecord, allowed_from: frozenset[str], require_human_agent: str | None
) -> bool:
    """A transition applies only while the state is one of ``allowed_from`` and, with
    ``require_human_agent``, while that human agent owns the conversation: a concurrent change in between
    makes it a conflict, never a transition chosen for another state."""
    if current.handoff not in allowed_from:
        return False
    return require_human_agent is None or current.human_agent == require_human_agent


def transitioned(
    current: ConversationRecord,
    *,
    handoff: str | None = None,
    human_agent: str | None = None,
    agent: str | None = None,
) -> ConversationRecord:
    """The conversation after a transition: None leaves a field as it is, ``""`` clears the owner (and the
    named agent). Any state but ``ai`` marks the conversation as having had a live chat, for good."""
    target = handoff or current.handoff
    return dataclasses.replace(
        current,
        handoff=target,
        human_agent=current.human_agent if human_agent is None else (human_agent or None),
        agent=current.agent if agent is None else (agent or None),
        has_livechat=current.has_livechat or target != HandoffState.AI.value,
    )


def only_appends(
    handoff: str | None, human_agent: str | None, agent: str | None, require_human_agent: str | None
) -> bool:
    """A transition that changes no field and checks no owner (an AI agent's reply): only the state guard
    and the append, which a backend may do in one guarded statement."""
    return handoff is None and human_agent is None and agent is None and require_human_agent is None


# pagination


def page_window(query: ListQuery) -> tuple[int, int]:
    """``(limit, offset)`` of a listing: v2 pages by ``limit``; v1 (no limit) answers the newest
    :data:`~.query.V1_MAX_CONVERSATIONS` conversations."""
    limit = query.limit or V1_MAX_CONVERSATIONS
    return limit, (query.page - 1) * limit


def page_of(query: ListQuery, items: list[ConversationRecord], total: int) -> ConversationPage:
    """The page answered: ``page_size`` is the asked limit, or (v1) how many came."""
    return ConversationPage(items, total, query.page, query.limit or len(items))


def empty_page(query: ListQuery) -> ConversationPage:
    """A listing over no channel at all."""
    return ConversationPage([], 0, query.page, query.limit or 0)


def page_from(query: ListQuery, found: list[ConversationRecord]) -> ConversationPage:
    """The page of a listing filtered outside the database: ``found`` is every match, in order."""
    limit, offset = page_window(query)
    return page_of(query, found[offset : offset + limit], len(found))


# metadata


def merged_metadata(
    current: ConversationRecord, public: dict[str, Any], private: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Public and private metadata after a patch: a shallow merge, the patch's keys win."""
    return {**current.metadata, **public}, {**current.private_metadata, **private}


def check_metadata_size(
    limit: int, current: ConversationRecord, public: dict[str, Any], private: dict[str, Any]
) -> None:
    """413 when the metadata after the patch (public and private together) is over ``limit`` bytes of
    JSON: checked before anything is written, by every writer (the client, an agent's answer)."""
    check_size(limit, "metadata", *merged_metadata(current, public, private))


def merged_channel(
    current: Channel, *, agent: str | None, agents: dict[str, str] | None, webhook_secret: str | None
) -> Channel:
    """A channel after an update: what is None stays; named agents merge (a name given again is replaced)."""
    return dataclasses.replace(
        current,
        agent=current.agent if agent is None else agent,
        agents={**current.agents, **(agents or {})},
        webhook_secret=current.webhook_secret if webhook_secret is None else webhook_secret,
    )


# the client_msg_id retry rule


def deduplicates(event: NewEvent) -> bool:
    """Only a message with a ``client_msg_id`` can be a retry; one without is always new."""
    return bool(event.client_msg_id)


def retry_of(event: NewEvent, earlier: Iterable[StoredEvent]) -> StoredEvent | None:
    """The stored message that ``event`` repeats, else None (then it is a new message and is appended).

    ``earlier``: the conversation's events with the same ``client_msg_id``, oldest first. A retry is a
    *user* message with the same id **and** the same payload: the first such is the answer. The npm
    client's ids (``unique-message-id-<ms>``) can collide between different messages, so the same id with
    other content is a new message, never a silent drop; an id that only another sender's event carries is
    no retry either. A backend reads ``earlier`` and appends in one serialized step (SQLite: its one writer
    thread; PostgreSQL: the conversation row's lock, taken before the read), and checks the conversation is
    live (:func:`require_live`) for a retry too.
    """
    if not deduplicates(event):
        return None
    for previous in earlier:
        if previous.client_msg_id == event.client_msg_id and is_retry(previous, event):
            return previous
    return None


def is_retry(previous: StoredEvent, event: NewEvent) -> bool:
    return previous.sender == "user" and previous.payload == event.payload


# edits


def check_editable(sender: str | None, senders: frozenset[str] | None) -> None:
    """With ``senders`` (see :func:`~.base.editable_by`), an edit of another sender's message is
    :class:`EditForbidden`; nothing is changed."""
    if senders is not None and sender not in senders:
        raise EditForbidden(sender)


def edited_payload(payload: dict[str, Any], content: Any) -> dict[str, Any]:
    """An edit replaces the content and keeps the rest of the payload."""
    return {**payload, "content": content}
