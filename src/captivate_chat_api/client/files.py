"""Files, as the npm client 7.0.0's ``CaptivateChatFileManager``: upload a file to the file service
(``POST {files}/api/file-to-text``, multipart, no auth header), get its extracted text and stored-file
info back, ask for fresh secure URLs (``POST {files}/api/presigned-url``), and send the result in a
message's ``content.files``.

Uploads are streamed: a path or a binary file object is read in chunks while it is sent, so a large file is
never held whole in memory, and ``on_progress`` is told how far it got.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import mimetypes
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypedDict, Unpack, overload

import httpx
from pydantic import BaseModel

from ..errors import ChatConnectionError, ProtocolError, RequestTimeoutError
from ..protocol.attachments import FileObject, FileStorage, float_or_none, int_or_none, str_or_none
from ..protocol.files import DEFAULT_PRESIGN_SECONDS, TTL_DAYS, needs_refresh
from .http import error_from_response

log = logging.getLogger("captivate_chat_api.client")

FILE_TO_TEXT_PATH = "/api/file-to-text"
PRESIGNED_URL_PATH = "/api/presigned-url"
CHUNK_SIZE = 256 * 1024
UPLOAD_CONCURRENCY = 4
"""``create_multiple`` uploads at most this many files at once (npm starts them all together)."""

FileSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]
"""What can be uploaded: a path, the bytes themselves, or a binary file object (read from where it is)."""


@dataclass(frozen=True, slots=True)
class UploadProgress:
    """What ``on_progress`` callbacks get while a file is sent: ``sent`` of ``total`` bytes (``total`` is
    None for a stream of unknown size)."""

    filename: str
    sent: int
    total: int | None

    @property
    def fraction(self) -> float | None:
        return self.sent / self.total if self.total else None


ProgressCallback = Callable[[UploadProgress], Any]


class UploadOptions(TypedDict, total=False):
    """The keyword arguments of ``file_manager.create`` / ``create_file`` (see :meth:`FileManager.create`)."""

    filename: str | None
    content_type: str | None
    storage: bool
    url: str | None
    on_progress: ProgressCallback | None


class FileSequence(Sequence[FileObject]):
    """Files as npm's ``CaptivateChatFileManager`` holds them: a sequence of :class:`FileObject` with the
    first file's name, type and text, sent as ``{"type": "files", "files": [...]}``."""

    type = "files"

    def __init__(self, files: Sequence[FileObject]) -> None:
        self.files: list[FileObject] = list(files)

    @overload
    def __getitem__(self, index: int) -> FileObject: ...
    @overload
    def __getitem__(self, index: slice) -> list[FileObject]: ...
    def __getitem__(self, index: int | slice) -> FileObject | list[FileObject]:
        return self.files[index]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[FileObject]:
        return iter(self.files)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.files!r})"

    @property
    def first_file(self) -> FileObject | None:
        return self.files[0] if self.files else None

    @property
    def filename(self) -> str | None:
        """The first file's name (npm ``getFilename()``)."""
        return self.files[0].filename if self.files else None

    @property
    def file_type(self) -> str | None:
        """The first file's type (npm ``getFileType()``)."""
        return self.files[0].type if self.files else None

    @property
    def text_content(self) -> str:
        """The first file's extracted text, ``""`` if none (npm ``getTextContent()``)."""
        return self.files[0].text_content if self.files else ""

    def to_wire(self) -> dict[str, Any]:
        return {"type": "files", "files": [f.to_wire() for f in self.files]}


class FileInput(FileSequence):
    """What ``file_manager.create`` returns: a sequence of :class:`FileObject` (``len``, index, iterate,
    ``.files``), sent as ``{"type": "files", "files": [...]}`` when used as a message's ``files``::

        fi = await conv.file_manager.create("report.pdf")
        await conv.send_message({"text": "Here it is", "files": fi})
    """

    def __init__(self, files: Sequence[FileObject], service: FileService | None = None) -> None:
        super().__init__(files)
        self._service = service

    async def refresh_secure_url(self, expires_in: int = DEFAULT_PRESIGN_SECONDS) -> str | None:
        """A new secure URL for the first file (None if it is not stored). The file object is updated too,
        so sending this input again carries the new URL."""
        first = self.first_file
        if first is None or first.storage is None or self._service is None:
            return None
        url = await self._service.presign(first.storage.file_key, expires_in)
        first.storage.presigned_url = url
        first.storage.expires_in = time.time() + expires_in
        return url


def wire_content(value: Any) -> Any:
    """Message content with every :class:`FileInput`, :class:`FileObject` or pydantic model in it turned
    into the JSON the npm client would send."""
    if isinstance(value, FileSequence | FileObject) or callable(getattr(value, "to_wire", None)):
        return value.to_wire()
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, dict):
        return {k: wire_content(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_content(v) for v in value]
    return value


# the upload body ---------------------------------------------------------------------------------


class _Source:
    """An open upload source: its name, size (None: unknown), and a chunk reader."""

    def __init__(self, source: FileSource, filename: str | None) -> None:
        self._close = False
        self._buffer: memoryview | None = None
        self._stream: IO[bytes] | None = None
        if isinstance(source, bytes | bytearray | memoryview):
            self._buffer = memoryview(source).cast("B")
            self.size: int | None = len(self._buffer)
            self.name = filename or f"attachment_{int(time.time() * 1000)}"
            return
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            self._stream = open(path, "rb")  # noqa: SIM115 -- closed by close()
            self._close = True
            self.name = filename or path.name
        elif hasattr(source, "read"):
            self._stream = source
            raw_name = getattr(source, "name", None)
            self.name = filename or (
                Path(raw_name).name if isinstance(raw_name, str) else f"attachment_{int(time.time() * 1000)}"
            )
        else:
            raise TypeError(
                f"file must be a path, bytes or a binary file object, not {type(source).__name__}"
            )
        self.size = _remaining(self._stream)

    async def chunks(self) -> AsyncIterator[bytes]:
        if self._buffer is not None:
            for start in range(0, len(self._buffer), CHUNK_SIZE):
                yield bytes(self._buffer[start : start + CHUNK_SIZE])
            return
        assert self._stream is not None
        while True:
            chunk = await asyncio.to_thread(self._stream.read, CHUNK_SIZE)
            if not chunk:
                return
            if not isinstance(chunk, bytes | bytearray):
                raise TypeError("the file object must be opened in binary mode ('rb')")
            yield bytes(chunk)

    def close(self) -> None:
        if self._close and self._stream is not None:
            self._stream.close()


def _remaining(stream: IO[bytes]) -> int | None:
    """Bytes left to read in a seekable stream (None: not seekable, size unknown)."""
    try:
        if not stream.seekable():
            return None
        position = stream.tell()
        end = stream.seek(0, os.SEEK_END)
        stream.seek(position)
        return end - position
    except (OSError, AttributeError, ValueError):
        return None


def _quote(value: str) -> str:
    """A form-data name or filename, escaped as browsers (and the npm client's fetch) do."""
    return value.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartUpload:
    """The ``multipart/form-data`` body of ``/api/file-to-text``, streamed: the file part first (field
    ``file``), then the text fields in the npm client's order."""

    def __init__(
        self,
        source: _Source,
        content_type: str,
        fields: list[tuple[str, str]],
        on_progress: ProgressCallback | None,
    ) -> None:
        self.boundary = "----captivate" + secrets.token_hex(12)
        self._source = source
        self._on_progress = on_progress
        head = (
            f"--{self.boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{_quote(source.name)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        tail = "".join(
            f'\r\n--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n{value}'
            for name, value in fields
        )
        self._head = head.encode()
        self._tail = (tail + f"\r\n--{self.boundary}--\r\n").encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def length(self) -> int | None:
        size = self._source.size
        return None if size is None else len(self._head) + size + len(self._tail)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._head
        sent = 0
        await self._report(0)
        async for chunk in self._source.chunks():
            yield chunk
            sent += len(chunk)
            await self._report(sent)
        yield self._tail

    async def _report(self, sent: int) -> None:
        if self._on_progress is None:
            return
        try:
            result = self._on_progress(UploadProgress(self._source.name, sent, self._source.size))
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("an on_progress callback raised")


# the file service --------------------------------------------------------------------------------


class FileService:
    """The two endpoints of the file service at ``base`` (the cloud's, or a gateway's own)."""

    def __init__(self, client: httpx.AsyncClient, base: str, *, upload_timeout: float = 300.0) -> None:
        self._client = client
        self.base = base.rstrip("/")
        self.upload_timeout = upload_timeout

    async def presign(self, file_key: str, expires_in: int = DEFAULT_PRESIGN_SECONDS) -> str:
        """A secure URL for a stored file, valid ``expires_in`` seconds (npm ``getSecureFileUrl``)."""
        body = await self._post(
            PRESIGNED_URL_PATH,
            json={"fileKey": file_key, "expiresIn": expires_in},
            headers={"Content-Type": "application/json"},
        )
        return str(body.get("presignedUrl") or "")

    async def upload(
        self,
        file: FileSource,
        *,
        filename: str | None = None,
        content_type: str | None = None,
        storage: bool = True,
        url: str | None = None,
        path: str | None = None,
        ttl_days: int | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FileObject:
        """Send one file for text extraction (and storage); the file object to put in a message."""
        if not storage and not url:
            raise ValueError("url is required when storage is False (the message must say where the file is)")
        source = _Source(file, filename)
        try:
            kind = content_type or mimetypes.guess_type(source.name)[0] or "application/octet-stream"
            fields = [("includeMetadata", "true"), ("storage", "true" if storage else "false")]
            if path:
                fields.append(("path", path))
            if ttl_days in TTL_DAYS:
                fields.append(("ttlDays", str(ttl_days)))
            body = MultipartUpload(source, kind, fields, on_progress)
            headers = {"Content-Type": body.content_type}
            if body.length is not None:
                headers["Content-Length"] = str(body.length)
            answer = await self._post(FILE_TO_TEXT_PATH, content=body, headers=headers, upload=True)
        finally:
            source.close()
        stored = None
        if storage:
            stored = FileStorage(
                file_key=str(answer.get("fileKey") or ""),
                presigned_url=str_or_none(answer.get("presignedUrl")),
                expires_in=float_or_none(answer.get("expiresIn")),
                file_size=int_or_none(answer.get("fileSize")),
                processing_time=float_or_none(answer.get("processingTime")),
            )
        return FileObject(
            filename=source.name,
            type=kind,
            text_content=str(answer.get("text") or ""),
            storage=stored,
            url=None if storage else url,
        )

    async def _post(self, path: str, *, upload: bool = False, **request: Any) -> dict[str, Any]:
        url = self.base + path
        timeout = httpx.Timeout(self.upload_timeout, connect=10.0) if upload else httpx.USE_CLIENT_DEFAULT
        what = "file upload" if upload else "secure URL"
        try:
            response = await self._client.post(url, timeout=timeout, **request)
        except httpx.TimeoutException as exc:
            raise RequestTimeoutError(f"{what}: no answer from {self.base} in time") from exc
        except httpx.TransportError as exc:
            raise ChatConnectionError(f"{what}: cannot reach {self.base} ({type(exc).__name__})") from exc
        if not response.is_success:
            raise error_from_response(response)
        try:
            body = response.json()
        except ValueError:
            raise ProtocolError(
                502, f"{what}: the file service answered {response.status_code} without JSON"
            ) from None
        if not isinstance(body, dict) or not body.get("success"):
            error = body.get("error") if isinstance(body, dict) else None
            raise ProtocolError(502, f"{what} failed: {error or 'Unknown error'}")
        return body


class FileManager:
    """Uploads through a :class:`FileService`. ``conversation.file_manager`` is one bound to a conversation
    (its uploads carry ``path`` = ``API_KEY/CONVERSATION_ID`` and the conversation's time to live);
    ``api.file_manager`` is the npm client's static ``CaptivateChatFileManager`` (no ``path``)."""

    def __init__(
        self, service: FileService, path: str | None = None, ttl_days: Callable[[], int | None] | None = None
    ) -> None:
        self.service = service
        self._path = path
        self._ttl_days = ttl_days or (lambda: None)

    async def create(self, file: FileSource, **options: Unpack[UploadOptions]) -> FileInput:
        """Upload one file; a :class:`FileInput` holding it (send it as a message's ``files``).

        Args:
            file: a path, bytes, or a binary file object (streamed from where it is).

        Keyword Args:
            filename (str | None): the name to give it (default: the path's or file object's name, else
                ``attachment_<ms>``).
            content_type (str | None): its type (default: guessed from the name, else
                ``application/octet-stream``).
            storage (bool): keep the file so it can be downloaded later (default True). With False only its text
                is extracted and ``url`` (required) says where it is.
            url (str | None): with ``storage=False``, your own URL of the file.
            on_progress (ProgressCallback | None): ``callback(UploadProgress)`` as the bytes go out (sync or
                async).

        Raises:
            ValueError: ``storage=False`` without ``url``.
            ProtocolError: the file service refused the file (``PayloadTooLargeError`` for 413,
                ``AuthenticationError`` for 401/403 …); ``error_desc`` is its ``error``.
        """
        return FileInput([await self.create_file(file, **options)], self.service)

    async def create_file(self, file: FileSource, **options: Unpack[UploadOptions]) -> FileObject:
        """Upload one file; the :class:`FileObject` itself (npm ``createFile``)."""
        return await self.service.upload(file, path=self._path, ttl_days=self._ttl_days(), **options)

    async def create_multiple(
        self,
        files: Sequence[FileSource],
        *,
        storage: bool = True,
        urls: Sequence[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> FileInput:
        """Upload several files (a few at a time); one :class:`FileInput` with all of them, in order."""
        if not storage and (urls is None or len(urls) != len(files)):
            raise ValueError("urls is required when storage is False and must match the number of files")
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def one(index: int, file: FileSource) -> FileObject:
            async with gate:
                url = urls[index] if not storage and urls is not None else None
                return await self.create_file(file, storage=storage, url=url, on_progress=on_progress)

        return FileInput(await asyncio.gather(*(one(i, f) for i, f in enumerate(files))), self.service)


# transcript refresh ------------------------------------------------------------------------------


async def refresh_files(
    files: list[dict[str, Any]], service: FileService, *, now: float | None = None
) -> tuple[list[dict[str, Any]], bool]:
    """Refresh the secure URL of every stored file expiring within 5 minutes (as npm ``getTranscript``);
    the files and whether any changed. A file whose refresh fails keeps its old URL."""
    moment = time.time() if now is None else now

    async def one(file: dict[str, Any]) -> dict[str, Any]:
        if not needs_refresh(file, moment):
            return file
        storage = file["storage"]
        try:
            url = await service.presign(str(storage["fileKey"]), DEFAULT_PRESIGN_SECONDS)
        except Exception as exc:  # noqa: BLE001 -- a refresh failure must not hide the transcript
            log.warning("could not refresh the URL of %s: %s", file.get("filename") or "a file", exc)
            return file
        return {
            **file,
            "storage": {**storage, "presignedUrl": url, "expiresIn": int(moment) + DEFAULT_PRESIGN_SECONDS},
        }

    refreshed = list(await asyncio.gather(*(one(f) for f in files)))
    return refreshed, any(new is not old for new, old in zip(refreshed, files, strict=True))
