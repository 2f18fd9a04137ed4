"""What the agent console shows: conversation lists, queue changes, live events, a conversation opened.

Message content is rendered by the terminal chat's code (``terminal.render``/``terminal.blocks``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..protocol import TranscriptEntry
from ..terminal.blocks import Block, metadata_block, transcript_block
from ..terminal.render import compact, render_content
from .agent_api import FeedEvent

SHORT = 8
TAKE_CONTEXT = 20
"""How many of the last transcript messages are shown when a conversation is taken."""


def short(conversation_id: str) -> str:
    """The id as the console shows it; any unambiguous prefix is accepted back."""
    return conversation_id[:SHORT]


def clock(iso: Any) -> str:
    """An ISO 8601 time as local ``HH:MM:SS`` (the date too when not today)."""
    try:
        when = datetime.fromisoformat(str(iso)).astimezone()
    except ValueError:
        return str(iso or "")
    return when.strftime(
        "%H:%M:%S" if when.date() == datetime.now().astimezone().date() else "%Y-%m-%d %H:%M"
    )


def state_text(state: Any, human_agent: Any) -> str:
    return f"{state} ({human_agent})" if state == "human" and human_agent else str(state)


def listing_block(conversations: list[dict[str, Any]], taken: set[str], current: str | None) -> Block:
    """The waiting and live conversations, oldest update first; ``*`` marks the current one, ``+`` yours."""
    if not conversations:
        return Block("info", ["[no conversation is waiting for a human or live]"])
    lines = [f"--- {len(conversations)} conversation{'s' if len(conversations) != 1 else ''} ---"]
    for item in sorted(conversations, key=lambda c: str(c.get("updated_at") or "")):
        cid = str(item.get("conversation_id"))
        mark = "*" if cid == current else "+" if cid in taken else " "
        state = state_text(item.get("state"), item.get("human_agent"))
        lines.append(
            f"{mark} {short(cid)}  {state:<22} user {item.get('user_id')}  {clock(item.get('updated_at'))}"
        )
    return Block("info", lines)


def queue_block(payload: dict[str, Any]) -> Block:
    """A ``handoff_update``: ``[queue] a1b2c3d4 waiting_human``."""
    cid = str(payload.get("conversation_id"))
    return Block(
        "update", [f"[queue] {short(cid)} {state_text(payload.get('state'), payload.get('human_agent'))}"]
    )


def _text(content: Any) -> list[str]:
    return render_content(content) or [""]


def event_block(event: FeedEvent) -> Block | None:
    """One event of a conversation this console took; None for what is not worth a line."""
    p = event.payload
    s = short(event.conversation_id or "?")
    if event.type == "user_message":
        return Block("echo", _text(p.get("content")), f"user {s}> ")
    if event.type == "livechat_message":
        return Block("agent", _text(p.get("content")), f"agent {s}> ")
    if event.type == "bot_message":
        return Block("bot", _text(p.get("content")), f"bot {s}> ")
    if event.type == "system_message":
        return Block("info", [f"[{s}] {' '.join(_text(p.get('content')))}"])
    if event.type == "conversation_update":
        data = "" if p.get("data") is None else f" {compact(p['data'])}"
        return Block("update", [f"[{s} {p.get('type')}{data}]"])
    if event.type == "user_action":
        return Block("echo", [f"[{s} user action {p.get('id')} {compact(p.get('data') or {})}]"])
    if event.type == "general_error":
        return Block(
            "error", [f"[{s} error {p.get('error_code')}: {p.get('error_desc') or 'unknown error'}]"]
        )
    return None  # deltas of a streamed reply, acks: the stored message follows


def _entries(data: dict[str, Any]) -> list[TranscriptEntry]:
    entries = []
    for raw in data.get("transcript") or []:
        try:
            entries.append(TranscriptEntry.from_wire(raw))
        except ValueError:
            continue
    return entries


def header_block(data: dict[str, Any]) -> Block:
    cid = str(data.get("conversation_id"))
    state = state_text(data.get("state"), data.get("human_agent"))
    lines = [
        f"=== conversation {cid} ===",
        f"user: {data.get('user_id')}  state: {state}  updated: {clock(data.get('updated_at'))}",
    ]
    if data.get("user_basic_info"):
        lines.append(f"user info: {compact(data['user_basic_info'])}")
    return Block("info", lines)


def conversation_blocks(data: dict[str, Any]) -> list[Block]:
    """``/open``: header, public and private metadata, and the whole transcript."""
    return [
        header_block(data),
        metadata_block(data.get("metadata") or {}),
        metadata_block(data.get("private_metadata") or {}, "private metadata"),
        transcript_block(_entries(data)),
    ]


def context_blocks(data: dict[str, Any]) -> list[Block]:
    """After a take: the header and the last messages (``/open`` shows everything)."""
    entries = _entries(data)
    blocks = [header_block(data)]
    if len(entries) > TAKE_CONTEXT:
        blocks.append(
            Block(
                "info",
                [
                    f"({len(entries) - TAKE_CONTEXT} earlier messages: /open {short(str(data.get('conversation_id')))})"
                ],
            )
        )
    blocks.append(transcript_block(entries[-TAKE_CONTEXT:]))
    return blocks
