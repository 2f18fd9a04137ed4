"""Transcript entries (PROTOCOL.md section 6)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from .attachments import FileObject
from .files import normalize_files

Sender = Literal["user", "bot", "human_agent", "system"]


class TranscriptEntry(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    message_id: str
    seq: int
    # ``from`` is a Python keyword: the field is ``sender`` in Python and ``from`` on the wire.
    sender: Sender
    content: Any
    created_at: str
    edited_at: str | None = None
    client_msg_id: str | None = None
    files: list[dict[str, Any]] | None = None
    """The message's files as the wire has them, normalised to one list whichever form was sent."""
    agent_name: str | None = None
    """The human agent's display name (on ``human_agent`` entries)."""

    @field_validator("files", mode="before")
    @classmethod
    def _one_list(cls, value: Any) -> list[dict[str, Any]] | None:
        return None if value is None else normalize_files(value)

    @property
    def attachments(self) -> list[FileObject]:
        """The message's files, typed (``filename``, ``type``, ``text_content``, ``storage``, ``url``)."""
        return [FileObject.from_wire(f) for f in self.files or []]

    def to_wire(self) -> dict[str, Any]:
        """The wire form: ``from`` in the sender's place, optional fields only when set (``content`` always)."""
        data: dict[str, Any] = {}
        for key, value in self.model_dump().items():
            if key == "sender":
                data["from"] = value
            elif value is not None or key == "content":
                data[key] = value
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TranscriptEntry:
        data = dict(data)
        data["sender"] = data.pop("from", "system")
        return cls.model_validate(data)
