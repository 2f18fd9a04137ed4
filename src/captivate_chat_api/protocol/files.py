"""Files on the wire: a message's ``content.files`` and the file service's two endpoints.

The npm client 7.0.0 sends a message's files in three forms: the wrapper ``{type: "files", files: [...]}``
(``files: fileInput``), a list of file objects, or one file object. :func:`normalize_files` turns any of
them into one list of plain file dicts, the form transcripts and agents see. Pure data, no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TTL_DAYS = (1, 7, 30, 90)
"""The only ``ttlDays`` values an upload may carry; any other is ignored (as the npm client does)."""
DEFAULT_PRESIGN_SECONDS = 7200
REFRESH_WINDOW_SECONDS = 300
"""``getTranscript()`` refreshes a file whose ``storage.expiresIn`` is this close (or past)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class FileStorage(_Model):
    """Where a stored file lives. ``expiresIn`` is absolute unix seconds (the presigned URL's expiry)."""

    fileKey: str
    presignedUrl: str | None = None
    expiresIn: float | None = None
    fileSize: int | None = None
    processingTime: float | None = None


class FileTextMetadata(_Model):
    source: str = "file_attachment"
    originalFileName: str | None = None
    storageType: str | None = None


class FileTextContent(_Model):
    type: str = "file_content"
    text: str = ""
    metadata: FileTextMetadata = Field(default_factory=FileTextMetadata)


class FileObject(_Model):
    """One attached file as a message carries it."""

    filename: str = ""
    type: str = "application/octet-stream"
    textContent: FileTextContent = Field(default_factory=FileTextContent)
    storage: FileStorage | None = None
    url: str | None = None


class FileToTextResponse(_Model):
    """The answer of ``POST /api/file-to-text`` (the storage fields only when ``storage`` was true)."""

    success: bool
    text: str = ""
    fileKey: str | None = None
    presignedUrl: str | None = None
    expiresIn: float | None = None
    fileSize: int | None = None
    processingTime: float | None = None
    error: str | None = None


class PresignRequest(_Model):
    """The body of ``POST /api/presigned-url``: here ``expiresIn`` is a duration in seconds."""

    fileKey: str = Field(min_length=1, max_length=512)
    expiresIn: int = DEFAULT_PRESIGN_SECONDS


class PresignResponse(_Model):
    success: bool
    presignedUrl: str | None = None
    expiresIn: int | None = None
    error: str | None = None


def _file_dict(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    # A browser File/Blob under ``file`` serialises as {}: it carries nothing, so it is dropped.
    return {k: v for k, v in value.items() if k != "file"}


def normalize_files(value: Any) -> list[dict[str, Any]]:
    """The file dicts of a ``content.files`` value in any of its three forms (non-objects are dropped)."""
    if isinstance(value, dict):
        inner = value.get("files")
        if value.get("type") == "files" and isinstance(inner, list):
            value = inner
        else:
            value = [value]
    if not isinstance(value, list):
        return []
    return [f for f in (_file_dict(item) for item in value) if f is not None]


def content_files(content: Any) -> list[dict[str, Any]]:
    """The normalised files of a message's content (none for a content that is not an object)."""
    if isinstance(content, dict) and "files" in content:
        return normalize_files(content["files"])
    return []


def content_text(content: Any) -> str:
    """What the user typed: ``content.text`` for an object, the string itself, else ``""`` (never JSON)."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return str(content["text"])
    return ""


def file_url(file: dict[str, Any]) -> str | None:
    """The address that downloads the file without headers: the developer's ``url`` or the presigned one."""
    url = file.get("url")
    if isinstance(url, str) and url:
        return url
    storage = file.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("presignedUrl"), str) and storage["presignedUrl"]:
        return str(storage["presignedUrl"])
    return None


def file_text(file: dict[str, Any]) -> str:
    text_content = file.get("textContent")
    if isinstance(text_content, dict) and isinstance(text_content.get("text"), str):
        return str(text_content["text"])
    return ""


def agent_file(file: dict[str, Any]) -> dict[str, Any]:
    """A file as an agent's ``ChatRequest.files`` holds it: the message's object plus a top-level ``url``."""
    out = dict(file)
    url = file_url(file)
    if url is not None:
        out["url"] = url
    if not isinstance(out.get("textContent"), dict):
        out["textContent"] = {"type": "file_content", "text": "", "metadata": {"source": "file_attachment"}}
    return out


def needs_refresh(file: dict[str, Any], now: float, window: float = REFRESH_WINDOW_SECONDS) -> bool:
    """True when a stored file's URL expires within ``window`` seconds (as ``getTranscript()`` decides)."""
    storage = file.get("storage")
    if not isinstance(storage, dict) or not storage.get("fileKey"):
        return False
    expires = storage.get("expiresIn")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        return True  # an unknown expiry (null) is refreshed rather than trusted
    return expires - now < window
