"""Receive a multipart upload as it streams in: the form's small fields kept, its ``file`` part hashed and
written to a scratch file, never buffered whole nor copied twice.

The parser (python-multipart) runs on the event loop, where it only finds boundaries (C-level searches) and
slices; the file's bytes are gathered into ~1 MiB batches that a thread hashes and writes (``hashlib`` and
file writes release the GIL on such buffers), so a 25 MiB upload costs the loop a few dozen short steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import python_multipart
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header

from .service import FileError

BATCH = 1 << 20
"""Bytes of the file gathered before a thread hashes and writes them."""
MAX_FIELDS = 20
MAX_FIELD_BYTES = 64 * 1024


@dataclass(slots=True)
class Received:
    fields: dict[str, str]
    filename: str
    scratch: Path
    size: int
    sha256: str


class _ScratchFile:
    """The file part on disk and its digest; every method runs in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0
        self._out: IO[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._out is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._out = self.path.open("wb")
        self.digest.update(data)
        self._out.write(data)
        self.size += len(data)

    def close(self) -> None:
        if self._out is None:  # an empty file part: an empty scratch file
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()
        else:
            self._out.close()

    def discard(self) -> None:
        if self._out is not None:
            self._out.close()
        self.path.unlink(missing_ok=True)


@dataclass(slots=True)
class _Form:
    """python-multipart's callbacks: which part is current, the fields so far, the file's pending bytes."""

    max_file: int
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None
    file_field: str | None = None
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    file_bytes: int = 0
    _header: bytes = b""
    _value: bytes = b""
    _disposition: bytes = b""
    _name: str = ""
    _is_file: bool = False
    _data: bytearray = field(default_factory=bytearray)

    def on_part_begin(self) -> None:
        self._disposition, self._name, self._is_file = b"", "", False
        self._data = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def on_header_end(self) -> None:
        if self._header.lower() == b"content-disposition":
            self._disposition = self._value
        self._header, self._value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        if b"name" not in options:
            raise FileError(400, "invalid multipart body: a part has no name")
        self._name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            if self.file_field is not None:
                raise FileError(400, "send one file per upload (field `file`)")
            self._is_file = True
            self.file_field = self._name
            self.filename = options[b"filename"].decode("utf-8", "replace")
        elif len(self.fields) >= MAX_FIELDS:
            raise FileError(400, f"invalid multipart body: more than {MAX_FIELDS} fields")

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.file_bytes += end - start
            if self.file_bytes > self.max_file:
                raise FileError(413, f"the file is larger than {self.max_file} bytes")
            self.pending.append(data[start:end])
            self.pending_bytes += end - start
            return
        if len(self._data) + end - start > MAX_FIELD_BYTES:
            raise FileError(400, f"invalid multipart body: a field is longer than {MAX_FIELD_BYTES} bytes")
        self._data += data[start:end]

    def on_part_end(self) -> None:
        if not self._is_file:
            self.fields[self._name] = self._data.decode("utf-8", "replace")

    def take_pending(self) -> bytes:
        chunk = b"".join(self.pending)
        self.pending.clear()
        self.pending_bytes = 0
        return chunk


async def receive_upload(
    body: AsyncIterator[bytes],
    content_type: str,
    *,
    max_file: int,
    max_body: int,
    scratch: Callable[[], Path],
) -> Received:
    """The form's fields and its ``file`` part (on disk at ``scratch()``): :class:`FileError` 413 past the
    limits (as soon as they are passed), 400 for a malformed form; nothing is left on disk on failure."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise FileError(400, "invalid multipart body: the Content-Type has no boundary")
    form = _Form(max_file)
    callbacks = {
        name: getattr(form, name)
        for name in (
            "on_part_begin",
            "on_part_data",
            "on_part_end",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
        )
    }
    parser = python_multipart.MultipartParser(boundary, callbacks)  # type: ignore[arg-type]
    sink = _ScratchFile(scratch())
    seen = 0
    try:
        try:
            async for chunk in body:
                seen += len(chunk)
                if seen > max_body:
                    raise FileError(413, f"the file is larger than {max_file} bytes")
                parser.write(chunk)
                if form.pending_bytes >= BATCH:
                    await asyncio.to_thread(sink.write, form.take_pending())
            parser.finalize()
        except FormParserError:
            raise FileError(400, "invalid multipart body") from None
        if form.file_field != "file" or form.filename is None:
            raise FileError(400, "the form has no `file` part")
        rest = form.take_pending()
        await asyncio.to_thread(_finish, sink, rest)
    except BaseException:  # a refusal, a disconnect, a cancellation: no scratch file stays behind
        with contextlib.suppress(OSError):
            sink.discard()
        raise
    return Received(form.fields, form.filename, sink.path, sink.size, sink.digest.hexdigest())


def _finish(sink: _ScratchFile, rest: bytes) -> None:
    if rest:
        sink.write(rest)
    sink.close()
