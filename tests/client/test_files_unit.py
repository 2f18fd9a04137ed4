"""The SDK's file parts that need no network: the streamed multipart body, the typed file objects and the
JSON they become (the npm client 7.0.0's, key for key), and the transcript's typed attachments."""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import io
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from captivate_chat_api import FileInput, FileObject, FileStorage, TranscriptEntry, UploadProgress
from captivate_chat_api.client.files import CHUNK_SIZE, MultipartUpload, _Source, wire_content

NPM_FILE = {  # what CaptivateChatFileManager.create() builds, minus `file` (a File serialises as {})
    "filename": "report.pdf",
    "type": "application/pdf",
    "textContent": {
        "type": "file_content",
        "text": "hello",
        "metadata": {"source": "file_attachment", "originalFileName": "report.pdf", "storageType": "direct"},
    },
    "storage": {
        "fileKey": "k1",
        "presignedUrl": "http://gw/files/k1?sig=x",
        "expiresIn": 1900000000,
        "fileSize": 5,
        "processingTime": 12,
    },
}


async def body_of(upload: MultipartUpload) -> bytes:
    return b"".join([chunk async for chunk in upload])


def parse_form(upload: MultipartUpload, body: bytes) -> list[tuple[str, str | None, str, bytes]]:
    """(name, filename, content type, bytes) of each part, parsed by the standard library."""
    raw = f"Content-Type: {upload.content_type}\r\n\r\n".encode() + body
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    parts = []
    for part in message.iter_parts():
        disposition = part.get("content-disposition")
        name = disposition.params["name"]
        parts.append((name, part.get_filename(), part.get_content_type(), part.get_payload(decode=True)))
    return parts


async def test_the_body_has_npm_fields_in_order_and_the_declared_length(tmp_path: Path) -> None:
    path = tmp_path / 'a "quoted".txt'
    path.write_bytes(b"x" * (CHUNK_SIZE * 2 + 17))
    seen: list[UploadProgress] = []
    source = _Source(path, None)
    upload = MultipartUpload(
        source,
        "text/plain",
        [("includeMetadata", "true"), ("storage", "true"), ("path", "KEY/conv"), ("ttlDays", "7")],
        seen.append,
    )
    body = await body_of(upload)
    source.close()
    assert len(body) == upload.length
    parts = parse_form(upload, body)
    assert [p[0] for p in parts] == ["file", "includeMetadata", "storage", "path", "ttlDays"]
    assert parts[0][1] == "a %22quoted%22.txt" and parts[0][2] == "text/plain"  # escaped as browsers do
    assert parts[0][3] == path.read_bytes()
    assert [p[3] for p in parts[1:]] == [b"true", b"true", b"KEY/conv", b"7"]
    assert [p.sent for p in seen] == [0, CHUNK_SIZE, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 17]
    assert seen[-1].fraction == 1.0 and {p.total for p in seen} == {2 * CHUNK_SIZE + 17}


async def test_sources_bytes_file_objects_and_unseekable_streams(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10
    named = tmp_path / "data.bin"
    named.write_bytes(data)
    with named.open("rb") as handle:
        handle.read(10)  # a file object is read from where it is, as its position says
        source = _Source(handle, None)
        assert source.name == "data.bin" and source.size == len(data) - 10
        assert b"".join([c async for c in source.chunks()]) == data[10:]

    anonymous = _Source(data, None)
    assert anonymous.name.startswith("attachment_") and anonymous.size == len(data)

    class Pipe(io.RawIOBase):  # a stream that cannot seek: its size is unknown, so no Content-Length
        def __init__(self) -> None:
            self.left = data

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            n = min(len(buffer), len(self.left), 1000)
            buffer[:n], self.left = self.left[:n], self.left[n:]
            return n

    pipe = _Source(io.BufferedReader(Pipe()), "p.bin")
    upload = MultipartUpload(pipe, "application/octet-stream", [], None)
    assert pipe.size is None and upload.length is None
    assert parse_form(upload, await body_of(upload))[0][3] == data
    with pytest.raises(TypeError):
        _Source(12, None)  # type: ignore[arg-type]


async def test_a_25_mib_file_is_streamed_not_held_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        for _ in range(25):
            out.write(b"\0" * (1 << 20))
    # tracemalloc's peak is the whole process's: under xdist another thread (execnet's) may allocate during a
    # pass, and that only ever adds. The upload's own allocations are the same each pass, so the lowest of
    # up to three passes is its figure (~3.2 chunks, 845 KB).
    peaks = []
    for _ in range(3):
        source = _Source(path, None)
        upload = MultipartUpload(source, "application/octet-stream", [("storage", "true")], None)
        tracemalloc.start()
        try:
            total = 0
            async for chunk in upload:
                total += len(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            source.close()
        assert total == upload.length
        peaks.append(peak)
        if peak < 4 * CHUNK_SIZE:
            break
    assert min(peaks) < 4 * CHUNK_SIZE, f"peaks {peaks} bytes while sending 25 MiB"


def test_file_objects_become_the_npm_json_key_for_key() -> None:
    fo = FileObject.from_wire(NPM_FILE)
    assert fo.filename == "report.pdf" and fo.text_content == "hello" and fo.type == "application/pdf"
    assert fo.storage == FileStorage("k1", "http://gw/files/k1?sig=x", 1900000000, 5, 12)
    assert fo.download_url == "http://gw/files/k1?sig=x"
    assert json.dumps(fo.to_wire()) == json.dumps(NPM_FILE)  # same keys, same order
    unstored = FileObject("a.txt", "text/plain", "hi", url="https://example.com/a.txt")
    assert unstored.to_wire() == {
        "filename": "a.txt",
        "type": "text/plain",
        "textContent": {
            "type": "file_content",
            "text": "hi",
            "metadata": {"source": "file_attachment", "originalFileName": "a.txt", "storageType": "direct"},
        },
        "url": "https://example.com/a.txt",
    }
    assert unstored.download_url == "https://example.com/a.txt"


def test_a_file_input_is_a_sequence_and_goes_out_in_each_npm_form() -> None:
    a, b = FileObject.from_wire(NPM_FILE), FileObject("b.csv", "text/csv", "x,y")
    fi = FileInput([a, b])
    assert len(fi) == 2 and fi[1] is b and list(fi) == [a, b] and fi[:1] == [a] and fi.files == [a, b]
    assert (fi.filename, fi.file_type, fi.text_content) == ("report.pdf", "application/pdf", "hello")
    assert FileInput([]).text_content == "" and FileInput([]).filename is None
    wrapper = wire_content({"text": "see", "files": fi})
    assert wrapper == {"text": "see", "files": {"type": "files", "files": [NPM_FILE, b.to_wire()]}}
    assert wire_content({"text": "see", "files": [a, b]})["files"] == [NPM_FILE, b.to_wire()]
    assert wire_content({"text": "see", "files": a})["files"] == NPM_FILE
    for form in (wrapper["files"], [NPM_FILE, b.to_wire()]):  # every form reads back as the same files
        assert FileObject.list_from(form) == [a, b]


async def test_refresh_without_storage_is_none() -> None:
    assert await FileInput([FileObject("a", "text/plain")]).refresh_secure_url() is None
    assert await FileInput([]).refresh_secure_url() is None


def test_transcript_entries_have_typed_attachments_whatever_form_was_sent() -> None:
    base = {"message_id": "m", "seq": 1, "from": "user", "content": {}, "created_at": "2026-01-01T00:00:00Z"}
    null_expiry = {**NPM_FILE, "storage": {**NPM_FILE["storage"], "expiresIn": None}}  # type: ignore[dict-item]
    for files in ({"type": "files", "files": [null_expiry]}, [null_expiry], null_expiry):
        entry = TranscriptEntry.from_wire({**base, "files": files})
        assert entry.files == [null_expiry]
        (attachment,) = entry.attachments
        assert attachment.filename == "report.pdf" and attachment.storage is not None
        assert attachment.storage.expires_in is None
    assert TranscriptEntry.from_wire(base).attachments == []


def test_progress_callbacks_may_be_async_and_may_fail(tmp_path: Path) -> None:
    calls: list[int] = []

    async def slow(progress: UploadProgress) -> None:
        await asyncio.sleep(0)
        calls.append(progress.sent)
        raise RuntimeError("a broken callback does not stop the upload")

    async def run() -> bytes:
        source = _Source(b"abc", "a.txt")
        return await body_of(MultipartUpload(source, "text/plain", [], slow))

    assert b"abc" in asyncio.run(run())
    assert calls == [0, 3]
