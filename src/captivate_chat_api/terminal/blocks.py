"""What each incoming event and command result looks like on screen, as :class:`Block` s of lines."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..errors import ProtocolError
from ..protocol import (
    Action,
    BotMessage,
    ConversationUpdate,
    GeneralError,
    LivechatMessage,
    PlatformEvent,
    TranscriptEntry,
    UserActionEcho,
    UserMessageEcho,
)
from .render import compact, file_lines, render_content

SENDER_LABELS = {"user": "user", "bot": "bot", "human_agent": "agent", "system": "system"}


@dataclass(frozen=True, slots=True)
class Block:
    """Lines to print together: ``prefix`` on the first, aligned continuation lines; ``style`` colours it."""

    style: str
    lines: list[str]
    prefix: str = ""


def system_block(text: str) -> Block:
    return Block("info", [text])


def error_block(error: Exception | str) -> Block:
    if isinstance(error, ProtocolError):
        return Block("error", [f"[error {error.error_code}: {error.error_desc}]"])
    return Block("error", [f"[error: {error}]"])


def describe(event: PlatformEvent, own_messages: set[str]) -> Block | None:
    """How one incoming event is shown; None for what is not worth a line (echoes of our own sends)."""
    if isinstance(event, BotMessage):
        return Block("bot", render_content(event.content) or [""], "bot> ")
    if isinstance(event, LivechatMessage):
        return Block("agent", render_content(event.content) or [""], "agent> ")
    if isinstance(event, Action):
        return Block(
            "action", [f"[action {a.get('id')} {compact(a.get('data') or {})}]" for a in event.actions]
        )
    if isinstance(event, ConversationUpdate):
        data = "" if event.data is None else f" {compact(event.data)}"
        return Block("update", [f"[{event.type}{data}]"])
    if isinstance(event, GeneralError):
        return Block("error", [f"[error {event.error_code}: {event.error_desc or 'unknown error'}]"])
    if isinstance(event, UserMessageEcho):
        lines = render_content(event.content)
        if event.client_msg_id in own_messages or not any(lines):
            return None
        return Block("echo", lines, "user (elsewhere)> ")
    if isinstance(event, UserActionEcho):
        return Block("echo", [f"[user action {event.id} {compact(event.data or {})}]"])
    return None


def _when(created_at: str) -> str:
    try:
        return datetime.fromisoformat(created_at).astimezone().strftime("%H:%M:%S ")
    except ValueError:
        return ""


def transcript_block(entries: list[TranscriptEntry]) -> Block:
    lines = [f"--- transcript: {len(entries)} message{'s' if len(entries) != 1 else ''} ---"]
    for entry in entries:
        body = render_content(entry.content)  # the content's own files included
        if not (isinstance(entry.content, dict) and entry.content.get("files")):
            body += file_lines(entry.files)
        head = f"  {_when(entry.created_at)}{SENDER_LABELS.get(entry.sender, entry.sender)}: "
        lines.append(head + (body[0] if body else ""))
        lines += [" " * len(head) + line for line in body[1:]]
    lines.append("--- end of transcript ---")
    return Block("info", lines)


def metadata_block(metadata: dict[str, Any], title: str = "metadata") -> Block:
    if not metadata:
        return Block("info", [f"--- {title}: (none) ---"])
    body = json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()
    return Block("info", [f"--- {title} ---", *body, f"--- end of {title} ---"])
