"""Message content (PROTOCOL.md section 5): a text is ``{type: "text", text}``; anything else is kept as is."""

from __future__ import annotations

from typing import Any

Content = dict[str, Any] | list[Any]
"""A message object, or a list of message objects. Unknown ``type`` values are kept untouched."""


def text_content(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def normalize_content(value: Any) -> Any:
    """A bare string becomes a text message, as the npm client does before sending."""
    if isinstance(value, str):
        return text_content(value)
    return value


def is_empty_text(content: Any) -> bool:
    """True for ``{type: "text", text: ""}``: the bot-first trigger, not a user utterance (a files-only
    message, ``{type: "text", text: "", files}``, is one)."""
    return (
        isinstance(content, dict)
        and content.get("type") == "text"
        and content.get("text") == ""
        and not content.get("files")
    )
