"""Attached files, typed: the items of a message's ``content.files`` (and a transcript entry's ``files``)
as Python objects with snake_case names, and back to the exact JSON the npm client 7.0.0 sends. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .files import normalize_files


@dataclass(slots=True)
class FileStorage:
    """A stored file (the wire's ``storage``): ``expires_in`` is the presigned URL's expiry, absolute
    unix seconds (None when the platform did not say)."""

    file_key: str
    presigned_url: str | None = None
    expires_in: float | None = None
    file_size: int | None = None
    processing_time: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire = {
            "fileKey": self.file_key,
            "presignedUrl": self.presigned_url,
            "expiresIn": self.expires_in,
            "fileSize": self.file_size,
            "processingTime": self.processing_time,
        }
        return {k: v for k, v in wire.items() if v is not None}  # JSON.stringify drops undefined the same way

    @classmethod
    def from_wire(cls, data: Any) -> FileStorage | None:
        if not isinstance(data, dict) or not isinstance(data.get("fileKey"), str) or not data["fileKey"]:
            return None
        return cls(
            file_key=data["fileKey"],
            presigned_url=str_or_none(data.get("presignedUrl")),
            expires_in=float_or_none(data.get("expiresIn")),
            file_size=int_or_none(data.get("fileSize")),
            processing_time=float_or_none(data.get("processingTime")),
        )


@dataclass(slots=True)
class FileObject:
    """One file as a message carries it (an item of ``content.files``).

    ``text_content`` is the extracted text; ``metadata`` what the wire's ``textContent.metadata`` holds
    beyond the npm client's own (``source: "file_attachment"``, ``originalFileName``, ``storageType:
    "direct"``, always sent). ``url`` is the developer's own URL of a file
    uploaded with ``storage=False``.
    """

    filename: str
    type: str
    text_content: str = ""
    storage: FileStorage | None = None
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def download_url(self) -> str | None:
        """The address that downloads the file without headers: ``url``, else the presigned URL."""
        return self.url or (self.storage.presigned_url if self.storage else None)

    def to_wire(self) -> dict[str, Any]:
        """The object the npm client sends, key for key (its ``file: {}`` carries nothing and is left out)."""
        metadata = {**_default_metadata(self.filename), **self.metadata}
        wire: dict[str, Any] = {
            "filename": self.filename,
            "type": self.type,
            "textContent": {"type": "file_content", "text": self.text_content, "metadata": metadata},
        }
        if self.storage is not None:
            wire["storage"] = self.storage.to_wire()
        if self.url is not None:
            wire["url"] = self.url
        return wire

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> FileObject:
        text = data.get("textContent")
        text = text if isinstance(text, dict) else {}
        metadata = text.get("metadata")
        filename = str(data.get("filename") or "")
        defaults = _default_metadata(filename)
        extra = (
            {k: v for k, v in metadata.items() if defaults.get(k) != v} if isinstance(metadata, dict) else {}
        )
        return cls(
            filename=filename,
            type=str(data.get("type") or "application/octet-stream"),
            text_content=str(text.get("text") or ""),
            storage=FileStorage.from_wire(data.get("storage")),
            url=str_or_none(data.get("url")),
            metadata=extra,
        )

    @classmethod
    def list_from(cls, value: Any) -> list[FileObject]:
        """The files of a ``content.files`` value (or a transcript entry's ``files``) in any of its forms."""
        return [cls.from_wire(item) for item in normalize_files(value)]


def _default_metadata(filename: str) -> dict[str, Any]:
    return {"source": "file_attachment", "originalFileName": filename, "storageType": "direct"}


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def float_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def int_or_none(value: Any) -> int | None:
    number = float_or_none(value)
    return int(number) if number is not None else None
