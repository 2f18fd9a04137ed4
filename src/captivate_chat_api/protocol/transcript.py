"""Transcript entries (PROTOCOL.md section 6)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

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
